/*
 * seqread: memory one process writes and another only reads, read whole.
 *
 * The writer (under its own lock) calls seq_begin() before it changes the
 * guarded memory and seq_end() after; a reader, which may hold no lock (its
 * mapping is read-only), copies the memory with seq_copy(), which copies
 * again until no write overlapped the copy.  The reader never writes a byte
 * of the writer's memory, and must still check what it copied before it
 * trusts a count or a length in it.
 *
 * Memory: nothing is allocated; the counter lives in the guarded memory.
 */
#ifndef FLA_SEQREAD_H
#define FLA_SEQREAD_H

#include <stdatomic.h>
#include <stddef.h>

void seq_begin(atomic_uint *seq);
void seq_end(atomic_uint *seq);
/* Copies len bytes of src (whose writes seq guards) to dst, consistently. */
void seq_copy(void *dst, const void *src, size_t len, const atomic_uint *seq);

#endif
