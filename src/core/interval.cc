#include "klined/interval.h"
