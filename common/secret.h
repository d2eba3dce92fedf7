/*
 * secret: passwords, API keys, challenges and tokens, read only from files.
 *
 * A secret file must be a regular file with no permission bits for group or
 * others (mode 0600 or 0400): anything else is refused with the mode in the
 * message, like ssh does for private keys.  The value is the file's content
 * with one trailing newline (LF or CRLF) removed.
 *
 * Memory: a struct secret owns its buffer; secret_free() zeroes it
 * (explicit_bzero) before releasing it.  Nothing in the agent formats a struct secret into a
 * message: the module's error texts name the file, never the content.
 */
#ifndef FLA_SECRET_H
#define FLA_SECRET_H

#include <stddef.h>

struct secret {
	char *data; /* NUL-terminated, may hold no NUL inside */
	size_t len;
};

/* Checks that path is a regular, non-empty file readable by this process
 * and closed to group and others.  On failure writes the reason (without the
 * path) into err and returns -1. */
int secret_check_file(const char *path, char *err, size_t errlen);

/* Reads the secret in path after the same checks. */
int secret_read_file(const char *path, struct secret *out, char *err, size_t errlen);

/* A random password of len characters (12 or more) from the kernel's CSPRNG
 * (getrandom): upper and lower case letters, digits and symbols, at least
 * one of each (Active Directory's complexity rule), no look-alikes (0 O 1 l
 * I) and nothing that needs quoting.  0, or -1 (no randomness, no memory). */
int secret_generate(struct secret *out, size_t len);

/* Zeroes and frees the value; safe on a zeroed struct. */
void secret_free(struct secret *s);

/* Compares a candidate with the secret in constant time (for the length of
 * the secret); returns 1 when equal, 0 otherwise. */
int secret_equals(const struct secret *s, const char *candidate, size_t len);

#endif
