#include "klined/candle.h"
