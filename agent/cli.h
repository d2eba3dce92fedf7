/*
 * cli: the command line of factorial-ldap-agent.
 *
 * cli_main() parses the global options (-c FILE, --help, --version), picks the
 * command and runs it, and returns the process exit code: 0 done, 1 a runtime
 * failure, 2 bad usage or an invalid config or mapping.  Only main() turns
 * that into an exit.
 *
 * Memory: nothing outlives a call; each command releases what it loaded.
 */
#ifndef FLA_CLI_H
#define FLA_CLI_H

enum cli_exit {
	CLI_OK = 0,
	CLI_FAIL = 1,
	CLI_USAGE = 2,
};

int cli_main(int argc, char **argv);

#endif
