#include "klined/trade_decoder.h"
