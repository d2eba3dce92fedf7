/*
 * main: process set-up and the exit code.  Everything else is in cli.c.
 */
#include "build.h"

#include "cli.h"
#include "log.h"

#include <curl/curl.h>
#include <locale.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	int rc;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return CLI_FAIL;
	rc = cli_main(argc, argv);
	log_close();
	curl_global_cleanup();
	return rc;
}
