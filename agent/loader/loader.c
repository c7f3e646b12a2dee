// placeholder
#include "loader/loader.h"
