/*
 * cnid-plugin: the CNI executable of cnid.
 *
 * kubelet/containerd run this program for every CNI call. It forwards the
 * call to the cnid daemon over a UNIX stream socket and prints the daemon's
 * answer; it decides nothing itself except what it must answer without the
 * daemon (VERSION, daemon unreachable, oversized input, missing netns).
 *
 * Wire format (docs/protocol.md, cnid/core/_protocol.py): a frame is a 4-byte
 * big-endian payload length followed by MessagePack.
 *   request:  [1, {CNI_* env: str -> str}, stdin: bin, has_netns: bool]
 *             (the opened CNI_NETNS rides on the first sendmsg as SCM_RIGHTS)
 *   response: [1, exit_code: int, stdout: bin]
 *
 * Built static (gcc -static) so it runs on hosts without a libc of their
 * own (Talos) and starts in about a millisecond. No NSS, no dlopen, no lock.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cni-versions.h" /* generated from cnid/cni/_versions.py */

#define PROTOCOL_VERSION 1
#define MAX_STDIN (1024u * 1024u)
#define MAX_FRAME (4u * 1024u * 1024u)
#define DEFAULT_SOCKET "/run/cnid/cni.sock"
#define DEFAULT_TIMEOUT_MS 60000L
#define DEFAULT_CNI_VERSION CNI_LATEST_VERSION

/* CNI spec error codes this program produces itself. */
#define CODE_UNKNOWN_CONTAINER 3
#define CODE_IO_FAILURE 5
#define CODE_DECODE_FAILURE 6
#define CODE_TRY_AGAIN_LATER 11
#define CODE_NOT_AVAILABLE 50

extern char **environ;

static unsigned char stdin_buf[MAX_STDIN + 1];
static size_t stdin_len;
static char cni_version[32] = DEFAULT_CNI_VERSION;
static const char *command = "";
static const char *socket_path = DEFAULT_SOCKET;
static long timeout_ms = DEFAULT_TIMEOUT_MS;
static struct timespec deadline;

/* ---------------------------------------------------------------- output */

static void write_all(int fd, const void *data, size_t len)
{
	const unsigned char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return; /* nobody to tell */
		}
		p += n;
		len -= (size_t)n;
	}
}

/* Output buffer for the JSON documents this program writes itself. */
static char out[4096];
static size_t out_len;

static void out_raw(const char *s, size_t len)
{
	if (len > sizeof(out) - out_len)
		len = sizeof(out) - out_len;
	memcpy(out + out_len, s, len);
	out_len += len;
}

static void out_str(const char *s)
{
	out_raw(s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

/* A JSON string literal; invalid UTF-8 becomes U+FFFD. */
static void out_json_str(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n = strlen(str);
	char esc[8];

	out_raw("\"", 1);
	while (n > 0) {
		size_t len = utf8_len(s, n);

		if (len == 0) {
			out_str("\\ufffd");
			len = 1;
		} else if (*s == '"' || *s == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*s;
			out_raw(esc, 2);
		} else if (*s == '\n') {
			out_str("\\n");
		} else if (*s == '\t') {
			out_str("\\t");
		} else if (*s < 0x20 || *s == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", *s);
			out_str(esc);
		} else {
			out_raw((const char *)s, len);
		}
		s += len;
		n -= len;
	}
	out_raw("\"", 1);
}

/* Print a CNI error JSON on stdout and exit 1. */
__attribute__((noreturn, format(printf, 3, 4)))
static void fail(int code, const char *msg, const char *fmt, ...)
{
	char details[1024], num[16];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(details, sizeof(details), fmt, ap);
	va_end(ap);

	out_len = 0;
	out_str("{\"cniVersion\":");
	out_json_str(cni_version);
	snprintf(num, sizeof(num), "%d", code);
	out_str(",\"code\":");
	out_str(num);
	out_str(",\"msg\":");
	out_json_str(msg);
	out_str(",\"details\":");
	out_json_str(details);
	out_str("}\n");
	write_all(STDOUT_FILENO, out, out_len);
	exit(1);
}

/* The daemon could not serve us: the runtime should retry (STATUS: not available). */
#define fail_daemon(msg, ...)                                                    \
	fail(strcmp(command, "STATUS") == 0 ? CODE_NOT_AVAILABLE                 \
					    : CODE_TRY_AGAIN_LATER,              \
	     msg, __VA_ARGS__)

/* ----------------------------------------------------------------- input */

static void read_stdin(void)
{
	while (stdin_len < sizeof(stdin_buf)) {
		ssize_t n = read(STDIN_FILENO, stdin_buf + stdin_len,
				 sizeof(stdin_buf) - stdin_len);

		if (n == 0)
			return;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EBADF)
				return; /* no stdin at all: an empty config */
			fail(CODE_IO_FAILURE, "cannot read the network configuration",
			     "read stdin: %s", strerror(errno));
		}
		stdin_len += (size_t)n;
	}
}

static int is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * Take the top-level "cniVersion" string of the configuration, for the
 * cniVersion of the JSON this program writes itself. A cheap scan, not a
 * parser: it tracks nesting and strings, and keeps the default if anything
 * looks odd. Only [0-9A-Za-z.+-] is accepted.
 */
static void extract_cni_version(void)
{
	static const char key[] = "cniVersion";
	const unsigned char *p = stdin_buf, *end = stdin_buf + stdin_len;
	int depth = 0;

	if (stdin_len > MAX_STDIN)
		end = stdin_buf + MAX_STDIN;
	while (p < end) {
		unsigned char c = *p++;
		const unsigned char *start;

		if (c == '{' || c == '[') {
			depth++;
			continue;
		}
		if (c == '}' || c == ']') {
			depth--;
			continue;
		}
		if (c != '"')
			continue;
		start = p;
		while (p < end && *p != '"') {
			if (*p == '\\')
				p++;
			p++;
		}
		if (p >= end)
			return;
		p++; /* closing quote */
		if (depth != 1 || (size_t)(p - 1 - start) != sizeof(key) - 1 ||
		    memcmp(start, key, sizeof(key) - 1) != 0)
			continue;
		while (p < end && is_space(*p))
			p++;
		if (p >= end || *p != ':')
			continue; /* a value that happens to read "cniVersion" */
		p++;
		while (p < end && is_space(*p))
			p++;
		if (p >= end || *p != '"')
			return;
		start = ++p;
		while (p < end && *p != '"') {
			if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
			      (*p >= 'A' && *p <= 'Z') || *p == '.' || *p == '-' ||
			      *p == '+'))
				return;
			p++;
		}
		if (p >= end || p == start || (size_t)(p - start) >= sizeof(cni_version))
			return;
		memcpy(cni_version, start, (size_t)(p - start));
		cni_version[p - start] = '\0';
		return;
	}
}

static void answer_version(void)
{
	out_len = 0;
	out_str("{\"cniVersion\":");
	out_json_str(cni_version);
	out_str(",\"supportedVersions\":" CNI_SUPPORTED_VERSIONS_JSON "}\n");
	write_all(STDOUT_FILENO, out, out_len);
	exit(0);
}

static void read_settings(void)
{
	const char *s;

	s = getenv("CNI_COMMAND");
	if (s)
		command = s;
	s = getenv("CNID_SOCKET");
	if (s && *s)
		socket_path = s;
	s = getenv("CNID_TIMEOUT_MS");
	if (s && *s) {
		char *end;
		long v;

		errno = 0;
		v = strtol(s, &end, 10);
		if (errno == 0 && *end == '\0' && v > 0 && v <= 24L * 3600 * 1000)
			timeout_ms = v;
	}
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
}

/* -------------------------------------------------------------- netns */

/*
 * Open CNI_NETNS. Returns the descriptor, or -1 when there is none to send.
 * ADD and CHECK need the namespace: a missing one is error 3. Everything
 * else (DEL, GC, STATUS...) proceeds without it so the daemon can clean up
 * after a namespace that is already gone.
 *
 * Nothing here can block: a namespace file is a regular (empty) file on
 * nsfs, so anything else (a FIFO, a device, a socket, a directory) is
 * refused before it is opened, and the open itself is O_NONBLOCK|O_NOCTTY
 * in case the path is swapped for a FIFO in between (fstat and fstatfs on
 * the descriptor then decide).
 */
static int open_netns(void)
{
	const char *path = getenv("CNI_NETNS");
	int required = strcmp(command, "ADD") == 0 || strcmp(command, "CHECK") == 0;
	struct statfs st;
	struct stat sb;
	int fd, type;

	if (!path || !*path)
		return -1;
	if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
		if (required)
			fail(CODE_UNKNOWN_CONTAINER, "container unknown or does not exist",
			     "CNI_NETNS %s is not a network namespace", path);
		return -1;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		if (required)
			fail(CODE_UNKNOWN_CONTAINER, "container unknown or does not exist",
			     "cannot open CNI_NETNS %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode))
		goto not_netns;
	if (fstatfs(fd, &st) < 0 || st.f_type != NSFS_MAGIC)
		goto not_netns;
	/* NS_GET_NSTYPE (Linux 4.11) tells a network namespace from others. */
	type = ioctl(fd, NS_GET_NSTYPE);
	if (type >= 0 && type != CLONE_NEWNET)
		goto not_netns;
	return fd;

not_netns:
	close(fd);
	if (required)
		fail(CODE_UNKNOWN_CONTAINER, "container unknown or does not exist",
		     "CNI_NETNS %s is not a network namespace", path);
	return -1;
}

/* ------------------------------------------------------------ msgpack */

static size_t str_hdr_len(size_t n)
{
	return n < 32 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
}

static unsigned char *put_be(unsigned char *p, uint32_t v, int bytes)
{
	while (bytes-- > 0)
		*p++ = (unsigned char)(v >> (8 * bytes));
	return p;
}

static unsigned char *put_str(unsigned char *p, const char *s, size_t n)
{
	if (n < 32)
		*p++ = (unsigned char)(0xa0 | n);
	else if (n < 0x100)
		*p++ = 0xd9, *p++ = (unsigned char)n;
	else if (n < 0x10000)
		*p++ = 0xda, p = put_be(p, (uint32_t)n, 2);
	else
		*p++ = 0xdb, p = put_be(p, (uint32_t)n, 4);
	memcpy(p, s, n);
	return p + n;
}

static unsigned char *put_bin(unsigned char *p, const void *s, size_t n)
{
	if (n < 0x100)
		*p++ = 0xc4, *p++ = (unsigned char)n;
	else if (n < 0x10000)
		*p++ = 0xc5, p = put_be(p, (uint32_t)n, 2);
	else
		*p++ = 0xc6, p = put_be(p, (uint32_t)n, 4);
	memcpy(p, s, n);
	return p + n;
}

static int is_cni_var(const char *e)
{
	return strncmp(e, "CNI_", 4) == 0 && strchr(e, '=') != NULL;
}

/* The whole request frame (header included), in one allocation. */
static unsigned char *encode_request(int has_netns, size_t *frame_len)
{
	size_t payload = 1 + 1 + 5 + 5 + stdin_len + 1; /* array, version, map, bin, bool */
	size_t count = 0;
	unsigned char *buf, *p;
	char **e;

	for (e = environ; *e; e++) {
		size_t name, value;

		if (!is_cni_var(*e))
			continue;
		name = (size_t)(strchr(*e, '=') - *e);
		value = strlen(*e) - name - 1;
		payload += str_hdr_len(name) + name + str_hdr_len(value) + value;
		count++;
		if (payload > MAX_FRAME)
			break;
	}
	if (payload > MAX_FRAME)
		fail(CODE_DECODE_FAILURE, "request too large",
		     "the CNI_* environment and stdin exceed %u bytes", MAX_FRAME);
	buf = malloc(4 + payload);
	if (!buf)
		fail(CODE_IO_FAILURE, "out of memory", "cannot allocate %zu bytes", 4 + payload);

	p = buf + 4;
	*p++ = 0x94;             /* fixarray of 4 */
	*p++ = PROTOCOL_VERSION; /* positive fixint */
	if (count < 0x10000)
		*p++ = 0xde, p = put_be(p, (uint32_t)count, 2);
	else
		*p++ = 0xdf, p = put_be(p, (uint32_t)count, 4);
	for (e = environ; *e; e++) {
		size_t name;

		if (!is_cni_var(*e))
			continue;
		name = (size_t)(strchr(*e, '=') - *e);
		p = put_str(p, *e, name);
		p = put_str(p, *e + name + 1, strlen(*e + name + 1));
	}
	p = put_bin(p, stdin_buf, stdin_len);
	*p++ = has_netns ? 0xc3 : 0xc2;

	*frame_len = (size_t)(p - buf);
	put_be(buf, (uint32_t)(*frame_len - 4), 4);
	return buf;
}

struct reader {
	const unsigned char *p, *end;
};

static int get_be(struct reader *r, int bytes, uint64_t *v)
{
	if (r->end - r->p < bytes)
		return -1;
	*v = 0;
	while (bytes-- > 0)
		*v = (*v << 8) | *r->p++;
	return 0;
}

static int get_array_len(struct reader *r, uint64_t *n)
{
	unsigned char c;

	if (r->p >= r->end)
		return -1;
	c = *r->p++;
	if ((c & 0xf0) == 0x90) {
		*n = c & 0x0f;
		return 0;
	}
	if (c == 0xdc)
		return get_be(r, 2, n);
	if (c == 0xdd)
		return get_be(r, 4, n);
	return -1;
}

/* Any MessagePack integer that fits in int64_t. */
static int get_int(struct reader *r, int64_t *v)
{
	unsigned char c;
	uint64_t u;

	if (r->p >= r->end)
		return -1;
	c = *r->p++;
	if (c <= 0x7f) {
		*v = c;
		return 0;
	}
	if (c >= 0xe0) {
		*v = (int8_t)c;
		return 0;
	}
	if (c >= 0xcc && c <= 0xcf) { /* uint 8/16/32/64 */
		if (get_be(r, 1 << (c - 0xcc), &u) < 0 || u > INT64_MAX)
			return -1;
		*v = (int64_t)u;
		return 0;
	}
	if (c >= 0xd0 && c <= 0xd3) { /* int 8/16/32/64 */
		int bytes = 1 << (c - 0xd0);

		if (get_be(r, bytes, &u) < 0)
			return -1;
		if (bytes < 8 && (u >> (8 * bytes - 1)))
			u |= ~(uint64_t)0 << (8 * bytes); /* sign-extend */
		*v = (int64_t)u;
		return 0;
	}
	return -1;
}

static int get_bin(struct reader *r, const unsigned char **data, uint64_t *n)
{
	unsigned char c;

	if (r->p >= r->end)
		return -1;
	c = *r->p++;
	if (c < 0xc4 || c > 0xc6 || get_be(r, 1 << (c - 0xc4), n) < 0)
		return -1;
	if ((uint64_t)(r->end - r->p) < *n)
		return -1;
	*data = r->p;
	r->p += *n;
	return 0;
}

/* --------------------------------------------------------------- socket */

static int remaining_ms(void)
{
	struct timespec now;
	long long ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (long long)(deadline.tv_sec - now.tv_sec) * 1000 +
	     (deadline.tv_nsec - now.tv_nsec) / 1000000;
	if (ms <= 0)
		fail_daemon("the cnid daemon did not answer in time",
			    "no answer on %s within %ld ms (CNID_TIMEOUT_MS)", socket_path,
			    timeout_ms);
	return ms > 1000000 ? 1000000 : (int)ms;
}

/* Wait until fd is ready for events, or fail once the deadline passes. */
static void wait_for(int fd, short events)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = events };
		int n = poll(&pfd, 1, remaining_ms());

		if (n > 0)
			return;
		if (n < 0 && errno != EINTR)
			fail_daemon("cannot talk to the cnid daemon", "poll %s: %s",
				    socket_path, strerror(errno));
	}
}

static int connect_daemon(void)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd, err;
	socklen_t len = sizeof(err);

	if (strlen(socket_path) >= sizeof(addr.sun_path))
		fail_daemon("the cnid daemon is not reachable",
			    "socket path %s is longer than %zu bytes", socket_path,
			    sizeof(addr.sun_path) - 1);
	strcpy(addr.sun_path, socket_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		fail_daemon("the cnid daemon is not reachable", "socket: %s",
			    strerror(errno));
	for (;;) {
		if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
			return fd;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			/* The listen backlog is full: try again shortly. */
			int ms = remaining_ms();

			poll(NULL, 0, ms < 5 ? ms : 5);
			continue;
		}
		if (errno != EINPROGRESS)
			fail_daemon("the cnid daemon is not reachable", "connect %s: %s",
				    socket_path, strerror(errno));
		wait_for(fd, POLLOUT);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err != 0)
			fail_daemon("the cnid daemon is not reachable", "connect %s: %s",
				    socket_path, strerror(err));
		return fd;
	}
}

/* Send the frame; the netns descriptor (if any) rides on the first bytes. */
static void send_frame(int sock, const unsigned char *buf, size_t len, int netns_fd)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	size_t off = 0;

	while (off < len) {
		struct iovec iov = { .iov_base = (void *)(buf + off), .iov_len = len - off };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;

		if (netns_fd >= 0) {
			struct cmsghdr *cmsg;

			memset(&control, 0, sizeof(control));
			msg.msg_control = control.buf;
			msg.msg_controllen = sizeof(control.buf);
			cmsg = CMSG_FIRSTHDR(&msg);
			cmsg->cmsg_level = SOL_SOCKET;
			cmsg->cmsg_type = SCM_RIGHTS;
			cmsg->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cmsg), &netns_fd, sizeof(int));
		}
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				wait_for(sock, POLLOUT);
				continue;
			}
			fail_daemon("cannot talk to the cnid daemon", "send to %s: %s",
				    socket_path, strerror(errno));
		}
		netns_fd = -1; /* delivered with the bytes just sent */
		off += (size_t)n;
	}
}

static void recv_exact(int sock, unsigned char *buf, size_t len, const char *what)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = recv(sock, buf + off, len - off, 0);

		if (n == 0)
			fail_daemon("malformed answer from the cnid daemon",
				    "%s closed the connection after %zu of %zu bytes of the %s",
				    socket_path, off, len, what);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				wait_for(sock, POLLIN);
				continue;
			}
			fail_daemon("cannot talk to the cnid daemon", "receive from %s: %s",
				    socket_path, strerror(errno));
		}
		off += (size_t)n;
	}
}

/* ----------------------------------------------------------------- main */

int main(void)
{
	unsigned char header[4], *frame, *payload;
	const unsigned char *stdout_data;
	uint64_t length, n, stdout_len;
	int64_t version, exit_code;
	struct reader r;
	size_t frame_len;
	int netns_fd, sock;

	signal(SIGPIPE, SIG_IGN);
	read_stdin();
	extract_cni_version();
	read_settings();
	if (stdin_len > MAX_STDIN)
		fail(CODE_DECODE_FAILURE, "network configuration too large",
		     "stdin is larger than %u bytes", MAX_STDIN);
	if (strcmp(command, "VERSION") == 0)
		answer_version();

	netns_fd = open_netns();
	frame = encode_request(netns_fd >= 0, &frame_len);
	sock = connect_daemon();
	send_frame(sock, frame, frame_len, netns_fd);
	free(frame);
	if (netns_fd >= 0)
		close(netns_fd);

	recv_exact(sock, header, sizeof(header), "frame header");
	length = ((uint64_t)header[0] << 24) | ((uint64_t)header[1] << 16) |
		 ((uint64_t)header[2] << 8) | header[3];
	if (length > MAX_FRAME)
		fail_daemon("malformed answer from the cnid daemon",
			    "answer of %llu bytes exceeds the limit of %u",
			    (unsigned long long)length, MAX_FRAME);
	payload = malloc(length ? length : 1);
	if (!payload)
		fail(CODE_IO_FAILURE, "out of memory", "cannot allocate %llu bytes",
		     (unsigned long long)length);
	recv_exact(sock, payload, length, "answer");
	close(sock);

	r.p = payload;
	r.end = payload + length;
	if (get_array_len(&r, &n) < 0 || n != 3 || get_int(&r, &version) < 0 ||
	    get_int(&r, &exit_code) < 0 || get_bin(&r, &stdout_data, &stdout_len) < 0 ||
	    r.p != r.end)
		fail_daemon("malformed answer from the cnid daemon",
			    "the answer from %s is not [version, exit_code, stdout]",
			    socket_path);
	if (version != PROTOCOL_VERSION)
		fail_daemon("malformed answer from the cnid daemon",
			    "the daemon speaks protocol version %lld, this plugin speaks %d",
			    (long long)version, PROTOCOL_VERSION);
	if (exit_code < 0 || exit_code > 255)
		fail_daemon("malformed answer from the cnid daemon",
			    "exit code %lld out of range", (long long)exit_code);

	write_all(STDOUT_FILENO, stdout_data, stdout_len);
	return (int)exit_code;
}
