#include "build.h"

#include "common/pmutex.h"

#include <errno.h>

int pmutex_init(pthread_mutex_t *m)
{
	pthread_mutexattr_t at;
	int rc;

	if (pthread_mutexattr_init(&at) != 0)
		return -1;
	pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
	rc = pthread_mutex_init(m, &at) == 0 ? 0 : -1;
	pthread_mutexattr_destroy(&at);
	return rc;
}

void pmutex_lock(pthread_mutex_t *m)
{
	if (pthread_mutex_lock(m) == EOWNERDEAD)
		pthread_mutex_consistent(m);
}
