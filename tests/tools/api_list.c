/*
 * api_list: a test helper that lists a Factorial collection through the
 * agent's own API client and paginator, and prints one id a line, then the
 * number of requests it took.  Integration tests drive it against the fake
 * Factorial server.
 *
 *   api_list AGENT.YAML PATH [QUERY]
 */
#include "build.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "common/diag.h"
#include "factorial.h"
#include "tmpl.h"

static int print_id(void *ctx, const cJSON *item)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "id");
	char num[64];

	(void)ctx;
	if (cJSON_IsNumber(id)) {
		tmpl_format_number(id->valuedouble, num, sizeof(num));
		printf("%s\n", num);
	} else if (cJSON_IsString(id)) {
		printf("%s\n", id->valuestring);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct config *cfg = NULL;
	struct factorial *f = NULL;
	struct diag d;
	struct sbuf err;
	long n;
	int rc = 2;

	if (argc < 3) {
		fprintf(stderr, "usage: api_list AGENT.YAML PATH [QUERY]\n");
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	diag_init(&d);
	sbuf_init(&err);
	if (config_load(argv[1], &cfg, &d) < 0) {
		diag_print(&d, stderr);
		goto cleanup;
	}
	rc = 1;
	if (factorial_open(cfg, &f, &err) < 0)
		goto failed;
	n = factorial_list(f, argv[2], argc > 3 ? argv[3] : NULL, print_id, NULL, &err);
	if (n < 0)
		goto failed;
	printf("%ld items, %ld requests, %ld token refreshes\n", n, factorial_requests(f), factorial_refreshes(f));
	rc = 0;
	goto cleanup;
failed:
	fprintf(stderr, "api_list: %s\n", sbuf_str(&err));
cleanup:
	factorial_close(f);
	config_free(cfg);
	diag_free(&d);
	sbuf_free(&err);
	curl_global_cleanup();
	return rc;
}
