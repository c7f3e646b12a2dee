// placeholder until the config module lands
#include "config/config.h"
