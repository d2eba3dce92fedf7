/* The configuration loader, on any text. */
#include "build.h"

#include "fuzz.h"

#include "common/diag.h"
#include "config.h"

FUZZ_LOADER_TARGET(struct config, config_load, config_free)
