#include "build.h"

#include "common/seqread.h"

#include <sched.h>
#include <string.h>

void seq_begin(atomic_uint *seq)
{
	atomic_store_explicit(seq, atomic_load_explicit(seq, memory_order_relaxed) + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release); /* odd before any of the writes */
}

void seq_end(atomic_uint *seq)
{
	atomic_store_explicit(seq, atomic_load_explicit(seq, memory_order_relaxed) + 1, memory_order_release);
}

void seq_copy(void *dst, const void *src, size_t len, const atomic_uint *seq)
{
	for (unsigned tries = 0;; tries++) {
		unsigned before = atomic_load_explicit(seq, memory_order_acquire), after;
		if (before & 1u) {
			if (tries > 64)
				sched_yield();
			continue; /* a write under way */
		}
		memcpy(dst, src, len);
		atomic_thread_fence(memory_order_acquire);
		after = atomic_load_explicit(seq, memory_order_relaxed);
		if (before == after)
			return;
	}
}
