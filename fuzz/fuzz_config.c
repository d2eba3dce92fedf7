/* The configuration loader, on any text. */
#include "build.h"

#include "fuzz.h"

#include "common/diag.h"
#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg = NULL;
	struct diag d;

	diag_init(&d);
	config_load(fuzz_as_file(data, size), &cfg, &d);
	config_free(cfg);
	diag_free(&d);
	return 0;
}
