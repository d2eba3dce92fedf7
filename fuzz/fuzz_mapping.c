/* The mapping loader, on any text. */
#include "build.h"

#include "fuzz.h"

#include "common/diag.h"
#include "mapping.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mapping *m = NULL;
	struct diag d;

	diag_init(&d);
	mapping_load(fuzz_as_file(data, size), &m, &d);
	mapping_free(m);
	diag_free(&d);
	return 0;
}
