/*
 * main: process set-up and the exit code.  Everything else is in cli.c.
 */
#include "build.h"

#include "agentd.h"
#include "cli.h"
#include "factorial.h"
#include "common/log.h"

#include <malloc.h>
#include <curl/curl.h>
#include <locale.h>
#include <stdlib.h>
#include <sys/stat.h>

int main(int argc, char **argv)
{
	int rc;

	/* two malloc arenas for all threads: one per thread (glibc's default, up
	 * to eight per core) lets each web server and worker thread keep its own
	 * heap, and the daemon's memory grow with the load it has seen */
	mallopt(M_ARENA_MAX, 2);
	/* everything the agent creates (state store, lock, tokens) is its own alone */
	umask(umask(077) | 077);
	/* started by `run` as its receiver process (which never calls the API, so
	 * neither libcurl nor its TLS library is set up there), or by a person */
	if (receiverd_requested()) {
		rc = receiverd_main(receiverd_requested());
		log_close();
		return rc;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return CLI_FAIL;
	rc = cli_main(argc, argv);
	factorial_forget_tokens();
	log_close();
	curl_global_cleanup();
	return rc;
}
