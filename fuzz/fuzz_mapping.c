/* The mapping loader, on any text. */
#include "build.h"

#include "fuzz.h"

#include "common/diag.h"
#include "mapping.h"

FUZZ_LOADER_TARGET(struct mapping, mapping_load, mapping_free)
