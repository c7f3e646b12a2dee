// placeholder until the proxy module lands
#include "proxy/proxy.h"
