#include "build.h"

#include "sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Sanitized builds (ASan's leak checker) need /proc and ptrace at exit. */
#if defined(__SANITIZE_ADDRESS__)
#define FLA_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FLA_SANITIZED 1
#endif
#endif
#ifndef FLA_SANITIZED
#define FLA_SANITIZED 0
#endif

#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif

/* ---- the user ---------------------------------------------------------------- */

int sandbox_give_state(const char *state_dir, const char *user, struct sbuf *err)
{
	struct passwd *pw = getpwnam(user);
	DIR *d = NULL;
	struct dirent *e;
	int rc = -1;

	if (!pw) {
		sbuf_addf(err, "user: no such user \"%s\"", user);
		goto cleanup;
	}
	if (geteuid() != 0) {
		rc = 0; /* only root can give files away; the checks at drop time say the rest */
		goto cleanup;
	}
	if (chown(state_dir, pw->pw_uid, pw->pw_gid) < 0 || !(d = opendir(state_dir))) {
		sbuf_addf(err, "state_dir: cannot give %s to %s: %s", state_dir, user, strerror(errno));
		goto cleanup;
	}
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (fchownat(dirfd(d), e->d_name, pw->pw_uid, pw->pw_gid, AT_SYMLINK_NOFOLLOW) < 0) {
			sbuf_addf(err, "state_dir: cannot give %s/%s to %s: %s", state_dir, e->d_name, user, strerror(errno));
			goto cleanup;
		}
	}
	rc = 0;
cleanup:
	if (d)
		closedir(d);
	return rc;
}

int sandbox_drop_user(const char *user, struct sbuf *err)
{
	struct passwd *pw = getpwnam(user);

	if (!pw) {
		sbuf_addf(err, "user: no such user \"%s\"", user);
		return -1;
	}
	if (geteuid() != 0) {
		if (getuid() == pw->pw_uid)
			return 0; /* started as that user already */
		sbuf_addf(err, "user: only root can become \"%s\" (started as uid %u)", user, (unsigned)geteuid());
		return -1;
	}
	if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		sbuf_addf(err, "user: cannot become \"%s\": %s", user, strerror(errno));
		return -1;
	}
	/* for good: neither the user nor the group may come back */
	if (pw->pw_uid != 0 && (setuid(0) == 0 || seteuid(0) == 0 || geteuid() == 0 || getuid() == 0)) {
		sbuf_addf(err, "user: became \"%s\" but root could be regained", user);
		return -1;
	}
	if (pw->pw_gid != 0 && (setgid(0) == 0 || getegid() == 0)) {
		sbuf_addf(err, "user: became \"%s\" but group root could be regained", user);
		return -1;
	}
	return 0;
}

void sandbox_no_tracing(void)
{
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/* ---- Landlock ------------------------------------------------------------------ */

/* Everything the kernel can refuse, by ABI version; the state folder gets
 * all of it but running programs, everything else none. */
static uint64_t landlock_rights(int abi)
{
	uint64_t r = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |
	             LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
	             LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
	             LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
	             LANDLOCK_ACCESS_FS_MAKE_SYM;
	if (abi >= 2)
		r |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		r |= LANDLOCK_ACCESS_FS_TRUNCATE;
	return r;
}

#if FLA_SANITIZED
/* A rule: what rights the path (opened with how: O_DIRECTORY for a folder and
 * all beneath it, O_NOFOLLOW for one file) gives. */
static int allow_path(int ruleset, const char *path, int how, uint64_t rights, struct sbuf *err)
{
	struct landlock_path_beneath_attr pb = { .allowed_access = rights };
	int rc;

	pb.parent_fd = open(path, O_PATH | O_CLOEXEC | how);
	if (pb.parent_fd < 0) {
		sbuf_addf(err, "Landlock: cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	rc = (int)syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
	if (rc < 0)
		sbuf_addf(err, "Landlock: cannot allow %s: %s", path, strerror(errno));
	close(pb.parent_fd);
	return rc < 0 ? -1 : 0;
}
#endif

static int landlock_confine(struct sbuf *warn, struct sbuf *err)
{
	int abi = (int)syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	struct landlock_ruleset_attr ra;
	uint64_t all;
	int rs = -1, rc = -1;

	if (abi < 1) {
		sbuf_adds(warn, "this kernel has no Landlock: the receiver can still open the files its account may");
		return 0;
	}
	all = landlock_rights(abi);
	ra = (struct landlock_ruleset_attr){ .handled_access_fs = all };
	rs = (int)syscall(SYS_landlock_create_ruleset, &ra, sizeof(ra), 0);
	if (rs < 0) {
		sbuf_addf(err, "Landlock: %s", strerror(errno));
		goto cleanup;
	}
	/* no rule: no file or folder can be opened, made or removed (it holds none of the daemon's) */
#if FLA_SANITIZED
	/* the leak checker reads /proc/self at exit */
	if (allow_path(rs, "/proc", O_DIRECTORY, LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR, err) < 0)
		goto cleanup;
#endif
	if (syscall(SYS_landlock_restrict_self, rs, 0) < 0) {
		sbuf_addf(err, "Landlock: %s", strerror(errno));
		goto cleanup;
	}
	rc = 0;
cleanup:
	if (rs >= 0)
		close(rs);
	return rc;
}

/* ---- seccomp ------------------------------------------------------------------- */

/* Calls the receiver never makes; made anyway, they fail with EPERM. */
static const int denied_calls[] = {
	SYS_execve, SYS_execveat, SYS_process_vm_readv, SYS_process_vm_writev, SYS_kexec_load,
	SYS_init_module, SYS_finit_module, SYS_delete_module, SYS_mount, SYS_umount2, SYS_pivot_root,
	SYS_chroot, SYS_setuid, SYS_setgid, SYS_setreuid, SYS_setregid, SYS_setresuid, SYS_setresgid,
	SYS_bpf, SYS_perf_event_open, SYS_keyctl, SYS_add_key, SYS_request_key, SYS_personality,
	/* no socket of its own: it cannot reach the directory (ldapi:// included), the API or anything
	 * else, nor listen on a port of its own; it accepts on the sockets it was given */
	SYS_socket, SYS_connect, SYS_bind, SYS_listen,
	/* nor a namespace of its own, where it would hold capabilities again */
	SYS_unshare, SYS_setns,
#if !FLA_SANITIZED
	SYS_ptrace, /* the leak checker of sanitized builds traces its own threads */
#endif
};

#if defined(__x86_64__)
#define FLA_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define FLA_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

static int seccomp_confine(struct sbuf *warn, struct sbuf *err)
{
#ifdef FLA_AUDIT_ARCH
	enum { N = sizeof(denied_calls) / sizeof(denied_calls[0]) };
	struct sock_filter f[4 + 2 * N + 1];
	struct sock_fprog prog = { .len = (unsigned short)(sizeof(f) / sizeof(f[0])), .filter = f };
	size_t k = 0;

	/* another architecture's calls have other numbers: refuse them all */
	f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
	f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FLA_AUDIT_ARCH, 1, 0);
	f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
	f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
	for (size_t i = 0; i < N; i++) {
		f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)denied_calls[i], 0, 1);
		f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
	}
	f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0) {
		if (errno == EINVAL) {
			sbuf_adds(warn, "this kernel has no seccomp filters: the receiver may still start programs");
			return 0;
		}
		sbuf_addf(err, "seccomp: %s", strerror(errno));
		return -1;
	}
	return 0;
#else
	(void)err;
	sbuf_adds(warn, "no seccomp filter for this architecture: the receiver may still start programs");
	return 0;
#endif
}

/* Started as root, the receiver gives up every capability, for good: none in its bounding set
 * (before it stops being root, while it may still drop them), none held. */
static int drop_capabilities(struct sbuf *err)
{
	if (geteuid() != 0)
		return 0; /* an ordinary user: none to give up */
	for (int cap = 0; cap <= 63; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
			sbuf_addf(err, "capabilities: cannot drop %d from the bounding set: %s", cap, strerror(errno));
			return -1;
		}
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	return 0;
}

/* And none held (after becoming another user the kernel cleared them already). */
static int drop_held(struct sbuf *err)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3];

	memset(none, 0, sizeof(none));
	if (syscall(SYS_capset, &h, none) < 0) {
		sbuf_addf(err, "capabilities: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int sandbox_confine(const char *user, struct sbuf *warn, struct sbuf *err)
{
	bool root = geteuid() == 0;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		sbuf_addf(err, "no_new_privs: %s", strerror(errno));
		return -1;
	}
	if (drop_capabilities(err) < 0 || (root && user && sandbox_drop_user(user, err) < 0) ||
	    (root && drop_held(err) < 0))
		return -1;
	sandbox_no_tracing();
	if (landlock_confine(warn, err) < 0)
		return -1;
	return seccomp_confine(warn, err);
}
