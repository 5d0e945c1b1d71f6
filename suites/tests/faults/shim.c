/*
 * A simulated faulty kernel for zccheck's own tests: an LD_PRELOAD shim around recvmsg and
 * getsockopt that breaks one answer per case process in the way $ZCFAULT names. Every case
 * process where the fault fires appends "<case id> <fault>" to $ZCFAULT_LOG, so the test can
 * demand that exactly those cases fail.
 *
 * The faults are the ones the contract forbids and a receiver can see.
 *
 * Error-queue faults act on the first zero-copy notification a process reads (dup: on the
 * read after it); receive faults on the first TCP_ZEROCOPY_RECEIVE answer that carries data
 * (probes on empty sockets are left alone).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef TCP_ZEROCOPY_RECEIVE
#define TCP_ZEROCOPY_RECEIVE 35
#endif
#ifndef SO_EE_ORIGIN_ZEROCOPY
#define SO_EE_ORIGIN_ZEROCOPY 5
#endif

static int fired;
static int armed_dup;
static unsigned char saved_control[256];
static size_t saved_controllen;
static int saved_flags;

static const char *fault(void)
{
	const char *m = getenv("ZCFAULT");
	return m ? m : "";
}

static void note(void)
{
	char cmd[4096];
	const char *log = getenv("ZCFAULT_LOG");
	int fd = open("/proc/self/cmdline", O_RDONLY);
	ssize_t n, i;
	const char *id = NULL;

	fired = 1;
	if (!log || fd < 0)
		return;
	n = read(fd, cmd, sizeof(cmd) - 1);
	close(fd);
	if (n <= 0)
		return;
	cmd[n] = 0;
	for (i = 0; i + 1 < n; i++) {
		if (cmd[i] == 0 && strcmp(cmd + i + 1, "__case") == 0) {
			id = cmd + i + 1 + strlen("__case") + 1;
			break;
		}
	}
	if (!id || id >= cmd + n)
		return;
	fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0644);
	if (fd >= 0) {
		dprintf(fd, "%s %s\n", id, fault());
		close(fd);
	}
}

static struct sock_extended_err *zc_ee(struct msghdr *msg, struct cmsghdr **out)
{
	struct cmsghdr *c;

	for (c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		int recverr = (c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) ||
			      (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR);
		if (!recverr || c->cmsg_len < CMSG_LEN(sizeof(struct sock_extended_err)))
			continue;
		struct sock_extended_err *ee = (void *)CMSG_DATA(c);
		if (ee->ee_origin != SO_EE_ORIGIN_ZEROCOPY)
			continue;
		if (out)
			*out = c;
		return ee;
	}
	return NULL;
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	static ssize_t (*real)(int, struct msghdr *, int);
	const char *m = fault();
	struct cmsghdr *c = NULL;
	struct sock_extended_err *ee;
	ssize_t rc;

	if (!real)
		real = dlsym(RTLD_NEXT, "recvmsg");
	if (!(flags & MSG_ERRQUEUE) || fired)
		return real(fd, msg, flags);
	if (armed_dup && msg->msg_controllen >= saved_controllen) {
		memcpy(msg->msg_control, saved_control, saved_controllen);
		msg->msg_controllen = saved_controllen;
		msg->msg_flags = saved_flags;
		note();
		return 0;
	}
	rc = real(fd, msg, flags);
	if (rc < 0)
		return rc;
	ee = zc_ee(msg, &c);
	if (!ee)
		return rc;
	if (!strcmp(m, "eq_dup")) {
		if (msg->msg_controllen <= sizeof(saved_control)) {
			memcpy(saved_control, msg->msg_control, msg->msg_controllen);
			saved_controllen = msg->msg_controllen;
			saved_flags = msg->msg_flags;
			armed_dup = 1;
		}
		return rc;
	}
	if (!strcmp(m, "eq_drop")) {
		note();
		return real(fd, msg, flags);
	}
	if (!strcmp(m, "eq_shift")) {
		ee->ee_info += 1;
		ee->ee_data += 1;
	} else if (!strcmp(m, "eq_errno")) {
		ee->ee_errno = EIO;
	} else if (!strcmp(m, "eq_pad")) {
		ee->ee_pad = 0x5a;
	} else if (!strcmp(m, "eq_code")) {
		ee->ee_code = 2;
	} else if (!strcmp(m, "eq_origin")) {
		ee->ee_origin = 9;
	} else if (!strcmp(m, "eq_no_errqueue_flag")) {
		msg->msg_flags &= ~MSG_ERRQUEUE;
	} else if (!strcmp(m, "eq_ctrunc")) {
		msg->msg_flags |= MSG_CTRUNC;
	} else if (!strcmp(m, "eq_level")) {
		c->cmsg_level = c->cmsg_level == SOL_IP ? SOL_IPV6 : SOL_IP;
		c->cmsg_type = c->cmsg_level == SOL_IP ? IP_RECVERR : IPV6_RECVERR;
	} else {
		return rc;
	}
	note();
	return rc;
}

/* The first fields of struct tcp_zerocopy_receive (uapi/linux/tcp.h). */
struct zc_head {
	uint64_t address;
	uint32_t length;
	uint32_t recv_skip_hint;
	uint32_t inq;
	int32_t err;
};

int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	static int (*real)(int, int, int, void *, socklen_t *);
	const char *m = fault();
	struct zc_head *z = val;
	int rc;

	if (!real)
		real = dlsym(RTLD_NEXT, "getsockopt");
	rc = real(fd, level, name, val, len);
	if (rc != 0 || fired || level != IPPROTO_TCP || name != TCP_ZEROCOPY_RECEIVE || !len)
		return rc;
	if (!strcmp(m, "zc_optlen_grow") && z->recv_skip_hint > 0) {
		/* The kernel claims to have written more than it was given. */
		*len += 8;
		note();
		return rc;
	}
	if (z->length == 0 && z->recv_skip_hint == 0)
		return rc;
	if (!strcmp(m, "zc_err") && *len >= 24) {
		z->err = 5;
	} else if (!strcmp(m, "zc_inq") && *len >= 20) {
		z->inq += 8192;
	} else if (!strcmp(m, "zc_skip") && *len >= 20) {
		/* A hint past everything queued (inq, which counts a FIN as one). A larger hint
		 * within the queue breaks no rule a receiver can see: it only reads mappable
		 * bytes with recv(). */
		z->recv_skip_hint = z->inq + 4096;
	} else if (!strcmp(m, "zc_length") && z->length > 0) {
		z->length += 4096;
	} else {
		return rc;
	}
	note();
	return rc;
}
