/* qload: the queue benchmark's load generator in C (bench/queues.py compiles and runs
 * it). It speaks cdragon's HTTP queue routes, Redis's RESP (the reliable-queue pattern:
 * LPUSH, BLMOVE to q:processing, LREM) and beanstalkd's text protocol (use/put,
 * watch/ignore/reserve-with-timeout, delete), so every system's push and cycle rows are
 * measured by one client that costs little CPU: one thread, epoll, one request in flight
 * per connection, no dependencies beyond libc.
 *
 *   cc -O2 -Wall -o qload bench/qload.c
 *   qload --proto http|resp|beanstalk --port N --mode push|cycle [--conns 400]
 *         [--queues 1] [--duration 10] [--warmup 1] [--acc bench]
 *
 * Connection k's n-th step uses queue q{(k + n*conns) % queues}, like bench/queues.py's
 * Python rows. A push step is one push; a cycle step is push -> receive (waiting up to
 * 1 s) -> ack, or push -> an empty receive (no cycle counted). Only steps completed
 * inside the measured window (after the warm-up) count. When the window ends, each
 * connection finishes the step it is in and starts no other, so the totals printed on
 * stderr (warm-up and that drain included) can be checked against the server's queues.
 *
 * stdout: {"rate": ops/s, "ops": N, "seconds": S, "client_cpu": this process's
 * user+sys CPU seconds per wall second over the window}. Any error answer is printed on
 * stderr and the exit status is 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define OUT_MAX 2048        /* one request: a body of ~60 bytes plus headers */
#define IN_MAX 16384        /* one answer: a received message is well under this */
#define TOKEN_MAX 512       /* a receipt (http) or a message (resp) kept for the ack */
#define DRAIN_SECS 10.0     /* how long the drain may take before we give up on it */

enum proto { HTTP, RESP, BEANSTALK };
enum mode { PUSH, CYCLE };
enum step { S_PUSH, S_RECV, S_ACK };

typedef struct {
    int fd, k;
    long long n;            /* this connection's step number */
    int queue;              /* the current step's queue */
    enum step step;
    int busy;               /* a request is in flight */
    int expect;             /* beanstalk: reply lines the request asks for */
    int using, watching;    /* beanstalk: the tube used (-1 none yet) / watched (-1 default) */
    char out[OUT_MAX];
    int outlen, outoff;
    char in[IN_MAX];
    int inlen;
    char token[TOKEN_MAX];  /* http: the receipt; resp: the message; beanstalk: the job id */
    int tokenlen;
} conn;

/* what a complete answer said, parsed by the protocol's parser */
typedef struct {
    int status;             /* http status */
    const char *body;       /* http body, resp bulk string, beanstalk last line */
    long len;
    char type;              /* resp: the reply's first byte */
    int null;               /* resp: null reply */
} reply;

static enum proto proto = HTTP;
static enum mode mode = PUSH;
static int port = 0, nconns = 400, nqueues = 1;
static double duration = 10, warmup = 1;
static const char *acc = "bench";
static int epfd;
static int stopping = 0, active = 0;
static unsigned long long done = 0;     /* counted steps (pushes or cycles) */
static unsigned long long t_pushes = 0, t_received = 0, t_empty = 0, t_acks = 0;

static const char *STEP_NAME[] = {"push", "receive", "ack"};

static void die(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "qload: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(1);
}

static void bad_answer(conn *c, const char *what, const char *text, long len) {
    die("connection %d, %s on q%d: %s: %.*s", c->k, STEP_NAME[c->step], c->queue, what,
        (int)(len > 2000 ? 2000 : len), text);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void want_write(conn *c, int on) {
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
}

/* write what is left of c->out; EPOLLOUT only while a write is cut short */
static void flush(conn *c) {
    while (c->outoff < c->outlen) {
        ssize_t w = write(c->fd, c->out + c->outoff, c->outlen - c->outoff);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                want_write(c, 1);
                return;
            }
            if (errno == EINTR)
                continue;
            die("connection %d: write: %s", c->k, strerror(errno));
        }
        c->outoff += w;
    }
}

/* append to c->out (printf style); the request is sent by send_out */
static void put(conn *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->out + c->outlen, OUT_MAX - c->outlen, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= OUT_MAX - c->outlen)
        die("request too long");
    c->outlen += n;
}

static void put_bytes(conn *c, const char *p, int n) {
    if (n > OUT_MAX - c->outlen)
        die("request too long");
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
}

static void send_out(conn *c) {
    c->busy = 1;
    c->outoff = 0;
    flush(c);
}

/* ---- requests ------------------------------------------------------------------------------ */
static int body_of(char *buf, long long number) {
    return snprintf(buf, 128, "{\"job\":\"send-mail\",\"to\":\"someone@example.com\",\"n\":%lld}", number);
}

/* RESP: one command as an array of bulk strings; lens[i] < 0 (or no lens): a C string */
static void resp_cmd(conn *c, int argc, const char **argv, const int *lens) {
    put(c, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++) {
        int n = lens && lens[i] >= 0 ? lens[i] : (int)strlen(argv[i]);
        put(c, "$%d\r\n", n);
        put_bytes(c, argv[i], n);
        put_bytes(c, "\r\n", 2);
    }
}

/* start a request of `step` on the connection's queue: its name in q, and in pq the
 * name of its Redis processing list */
static void begin(conn *c, enum step step, char q[32], char pq[48]) {
    c->outlen = 0;
    c->step = step;
    snprintf(q, 32, "q%d", c->queue);
    snprintf(pq, 48, "q%d:processing", c->queue);
}

static void send_push(conn *c) {
    char body[128], q[32], pq[48];
    /* the same numbers as the Python rows: n in push mode, k*10,000,000 + n in cycles */
    int blen = body_of(body, mode == PUSH ? c->n : c->k * 10000000LL + c->n);
    begin(c, S_PUSH, q, pq);
    if (proto == HTTP) {
        put(c, "POST /db/%s/queue/%s HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\n\r\n", acc, q, blen);
        put_bytes(c, body, blen);
    } else if (proto == RESP) {
        const char *argv[] = {"LPUSH", q, body};
        const int lens[] = {-1, -1, blen};
        resp_cmd(c, 3, argv, lens);
    } else {
        c->expect = 1;
        if (c->using != c->queue) {       /* switch tubes in the same write */
            put(c, "use %s\r\n", q);
            c->using = c->queue;
            c->expect = 2;
        }
        put(c, "put 1024 0 60 %d\r\n", blen);
        put_bytes(c, body, blen);
        put_bytes(c, "\r\n", 2);
    }
    send_out(c);
}

static void send_recv(conn *c) {
    char q[32], pq[48];
    begin(c, S_RECV, q, pq);
    if (proto == HTTP) {
        char req[128];
        int n = snprintf(req, sizeof req, "{\"Queue\":\"%s\",\"Wait\":1,\"Visibility\":60}", q);
        put(c, "POST /queue/%s HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\n\r\n", acc, n);
        put_bytes(c, req, n);
    } else if (proto == RESP) {
        const char *argv[] = {"BLMOVE", q, pq, "RIGHT", "LEFT", "1"};
        resp_cmd(c, 6, argv, NULL);
    } else {
        c->expect = 1;
        if (c->watching != c->queue) {
            if (c->watching < 0)
                put(c, "watch %s\r\nignore default\r\n", q);
            else
                put(c, "watch %s\r\nignore q%d\r\n", q, c->watching);
            c->watching = c->queue;
            c->expect = 3;
        }
        put(c, "reserve-with-timeout 1\r\n");
    }
    send_out(c);
}

static void send_ack(conn *c) {
    char q[32], pq[48];
    begin(c, S_ACK, q, pq);
    if (proto == HTTP) {
        put(c, "DELETE /db/%s/queue/%s?receipt=%.*s HTTP/1.1\r\nHost: b\r\n\r\n", acc, q, c->tokenlen, c->token);
    } else if (proto == RESP) {
        const char *argv[] = {"LREM", pq, "1", c->token};
        const int lens[] = {-1, -1, -1, c->tokenlen};
        resp_cmd(c, 4, argv, lens);
    } else {
        c->expect = 1;
        put(c, "delete %.*s\r\n", c->tokenlen, c->token);
    }
    send_out(c);
}

/* the connection's next step, or none once the measured window has ended */
static void next_step(conn *c, int first) {
    if (!first)
        c->n++;
    if (stopping) {
        c->busy = 0;
        active--;
        return;
    }
    c->queue = (int)((c->k + c->n * nconns) % nqueues);
    send_push(c);
}

/* ---- answers: each parser returns the bytes one complete answer takes, 0 if incomplete ---- */
static const char *find_crlf(const char *p, const char *end) {
    const char *x = memmem(p, end - p, "\r\n", 2);
    return x;
}

static long parse_http(conn *c, reply *r) {
    const char *buf = c->in, *end = c->in + c->inlen;
    const char *hend = memmem(buf, c->inlen, "\r\n\r\n", 4);
    if (!hend)
        return 0;
    if (c->inlen < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ')
        bad_answer(c, "not an HTTP/1.x answer", buf, hend - buf);
    r->status = atoi(buf + 9);
    long clen = -1;
    const char *line = find_crlf(buf, end) + 2;
    while (line < hend + 2) {                       /* each header line */
        const char *eol = find_crlf(line, end);
        if (eol - line > 15 && strncasecmp(line, "content-length:", 15) == 0)
            clen = strtol(line + 15, NULL, 10);
        else if (eol - line > 18 && strncasecmp(line, "transfer-encoding:", 18) == 0)
            bad_answer(c, "a chunked answer (not expected)", buf, hend - buf);
        line = eol + 2;
    }
    if (clen < 0)
        clen = 0;                                   /* no body (cdragon always sends one) */
    long total = (hend + 4 - buf) + clen;
    if (total > IN_MAX)
        bad_answer(c, "answer too large", buf, hend - buf);
    if (c->inlen < total)
        return 0;
    r->body = hend + 4;
    r->len = clen;
    return total;
}

static long parse_resp(conn *c, reply *r) {
    const char *buf = c->in, *end = c->in + c->inlen;
    const char *eol = find_crlf(buf, end);
    if (!eol)
        return 0;
    long head = eol + 2 - buf;
    r->null = 0;
    r->type = buf[0];
    switch (buf[0]) {
    case '+':
    case ':':
        r->body = buf + 1;
        r->len = eol - buf - 1;
        return head;
    case '-':
        bad_answer(c, "error reply", buf, eol - buf);
        return 0;
    case '$':
    case '*': {
        long n = strtol(buf + 1, NULL, 10);
        if (n < 0) {                                /* null bulk string or null array */
            r->null = 1;
            return head;
        }
        if (buf[0] == '*')
            bad_answer(c, "an array reply (not expected)", buf, eol - buf);
        if (head + n + 2 > IN_MAX)
            bad_answer(c, "answer too large", buf, eol - buf);
        if (c->inlen < head + n + 2)
            return 0;
        r->body = eol + 2;
        r->len = n;
        return head + n + 2;
    }
    default:
        bad_answer(c, "not a RESP reply", buf, eol - buf);
        return 0;
    }
}

/* c->expect lines: the ones before the last answer `use` / `watch` / `ignore` */
static long parse_beanstalk(conn *c, reply *r) {
    const char *buf = c->in, *end = c->in + c->inlen, *p = buf;
    for (int i = 0; i < c->expect; i++) {
        const char *eol = find_crlf(p, end);
        if (!eol)
            return 0;
        if (i < c->expect - 1) {
            if (strncmp(p, "USING ", 6) != 0 && strncmp(p, "WATCHING ", 9) != 0)
                bad_answer(c, "tube switch refused", p, eol - p);
            p = eol + 2;
            continue;
        }
        r->body = p;
        r->len = eol - p;
        if (strncmp(p, "RESERVED ", 9) == 0) {
            long size = 0;
            if (sscanf(p + 9, "%*s %ld", &size) != 1 || size < 0)
                bad_answer(c, "bad RESERVED line", p, eol - p);
            if (eol + 2 - buf + size + 2 > IN_MAX)
                bad_answer(c, "answer too large", p, eol - p);
            if (end - (eol + 2) < size + 2)
                return 0;
            p = eol + 2 + size + 2;         /* the job's body: not needed for the delete */
        } else {
            p = eol + 2;
        }
    }
    return p - buf;
}

static int starts(const reply *r, const char *word) {
    size_t n = strlen(word);
    return r->len >= (long)n && memcmp(r->body, word, n) == 0;
}

static void keep_token(conn *c, const char *p, long n) {
    if (n <= 0 || n >= TOKEN_MAX)
        bad_answer(c, "receipt / message of an odd size", p, n > 0 ? n : 0);
    memcpy(c->token, p, n);
    c->token[n] = 0;
    c->tokenlen = (int)n;
}

/* the http receive's receipt, or 0 when Messages is empty */
static int http_receipt(conn *c, const reply *r) {
    const char *end = r->body + r->len;
    const char *p = memmem(r->body, r->len, "\"Receipt\"", 9);
    if (!p) {
        if (!memmem(r->body, r->len, "\"Messages\"", 10))
            bad_answer(c, "no Messages in the answer", r->body, r->len);
        return 0;
    }
    p += 9;
    while (p < end && (*p == ' ' || *p == ':'))
        p++;
    if (p >= end || *p != '"')
        bad_answer(c, "Receipt is not a string", r->body, r->len);
    const char *q = memchr(p + 1, '"', end - p - 1);
    if (!q)
        bad_answer(c, "Receipt is not a string", r->body, r->len);
    keep_token(c, p + 1, q - p - 1);
    return 1;
}

/* one complete answer: check it, count it, send what comes next */
static void on_answer(conn *c, const reply *r) {
    int got = 0;
    c->busy = 0;
    if (proto == HTTP && r->status != 200)
        bad_answer(c, "status not 200", r->body, r->len);
    switch (c->step) {
    case S_PUSH:
        if (proto == RESP && r->type != ':')
            bad_answer(c, "LPUSH answered", c->in, r->len + 1);
        if (proto == BEANSTALK && !starts(r, "INSERTED "))
            bad_answer(c, "put answered", r->body, r->len);
        t_pushes++;
        if (mode == PUSH) {
            done++;
            next_step(c, 0);
        } else {
            send_recv(c);
        }
        return;
    case S_RECV:
        if (proto == HTTP) {
            got = http_receipt(c, r);
        } else if (proto == RESP) {
            if (!r->null && r->type != '$')
                bad_answer(c, "BLMOVE answered", c->in, r->len + 1);
            if (!r->null)
                keep_token(c, r->body, r->len);
            got = !r->null;
        } else if (starts(r, "RESERVED ")) {
            const char *id = r->body + 9, *sp = memchr(id, ' ', r->len - 9);
            keep_token(c, id, sp ? sp - id : 0);
            got = 1;
        } else if (!starts(r, "TIMED_OUT")) {
            bad_answer(c, "reserve answered", r->body, r->len);
        }
        if (got) {
            t_received++;
            send_ack(c);
        } else {
            t_empty++;                              /* start over with a push */
            next_step(c, 0);
        }
        return;
    case S_ACK:
        if (proto == RESP && !(r->type == ':' && r->len == 1 && r->body[0] == '1'))
            bad_answer(c, "LREM answered (expected 1)", r->body, r->len);
        if (proto == BEANSTALK && !starts(r, "DELETED"))
            bad_answer(c, "delete answered", r->body, r->len);
        t_acks++;
        done++;
        next_step(c, 0);
        return;
    }
}

static void on_readable(conn *c) {
    if (c->inlen == IN_MAX)
        bad_answer(c, "answer too large", c->in, c->inlen);
    ssize_t got = read(c->fd, c->in + c->inlen, IN_MAX - c->inlen);
    if (got == 0)
        die("connection %d closed by the server (during %s on q%d)", c->k, STEP_NAME[c->step], c->queue);
    if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        die("connection %d: read: %s", c->k, strerror(errno));
    }
    c->inlen += got;
    for (;;) {
        reply r = {0};
        long used;
        if (!c->busy) {
            if (c->inlen)
                bad_answer(c, "data with no request in flight", c->in, c->inlen);
            return;
        }
        used = proto == HTTP ? parse_http(c, &r) : proto == RESP ? parse_resp(c, &r) : parse_beanstalk(c, &r);
        if (used == 0)
            return;
        /* the answer's bytes stay valid while on_answer builds the next request */
        on_answer(c, &r);
        memmove(c->in, c->in + used, c->inlen - used);
        c->inlen -= used;
    }
}

static conn *open_conn(int k) {
    conn *c = calloc(1, sizeof *c);
    if (!c)
        die("out of memory");
    c->k = k;
    c->using = c->watching = -1;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        die("socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* a blocking connect on loopback completes at once; the socket is non-blocking after */
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0)
        die("connect to 127.0.0.1:%d: %s", port, strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0)
        die("non-blocking: %s", strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    return c;
}

/* the run's phases: warm-up, the measured window (its edges snapshot the count and the
 * CPU time), then the drain */
static enum { WARM, MEASURE, DRAIN } phase = WARM;
static double start, t0, t1, c0, c1, deadline;
static unsigned long long d0, d1;

static void edges(double t) {
    if (phase == WARM && t >= start + warmup) {
        d0 = done, t0 = t, c0 = cpu_s();
        phase = MEASURE;
    }
    if (phase == MEASURE && t >= t0 + duration) {
        d1 = done, t1 = t, c1 = cpu_s();
        phase = DRAIN;
        stopping = 1;
        deadline = t + DRAIN_SECS;
    }
}

static void usage(void) {
    fprintf(stderr,
            "usage: qload --proto http|resp|beanstalk --port N --mode push|cycle [--conns 400]\n"
            "             [--queues 1] [--duration 10] [--warmup 1] [--acc bench]\n");
    exit(2);
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"proto", required_argument, 0, 'p'}, {"port", required_argument, 0, 'P'},
        {"conns", required_argument, 0, 'c'}, {"queues", required_argument, 0, 'q'},
        {"mode", required_argument, 0, 'm'}, {"duration", required_argument, 0, 'd'},
        {"warmup", required_argument, 0, 'w'}, {"acc", required_argument, 0, 'a'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int o, have_mode = 0;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'p':
            if (strcmp(optarg, "http") == 0) proto = HTTP;
            else if (strcmp(optarg, "resp") == 0) proto = RESP;
            else if (strcmp(optarg, "beanstalk") == 0) proto = BEANSTALK;
            else usage();
            break;
        case 'm':
            if (strcmp(optarg, "push") == 0) mode = PUSH;
            else if (strcmp(optarg, "cycle") == 0) mode = CYCLE;
            else usage();
            have_mode = 1;
            break;
        case 'P': port = atoi(optarg); break;
        case 'c': nconns = atoi(optarg); break;
        case 'q': nqueues = atoi(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'a': acc = optarg; break;
        default: usage();
        }
    }
    if (optind != argc || !have_mode || port <= 0 || port > 65535 || nconns < 1 || nqueues < 1 ||
        duration <= 0 || warmup < 0 || strlen(acc) > 64)
        usage();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nconns + 16) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)nconns + 16 ? rl.rlim_max : (rlim_t)nconns + 16;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);              /* a closed socket is reported by write/read */
    epfd = epoll_create1(0);
    if (epfd < 0)
        die("epoll_create1: %s", strerror(errno));
    conn **conns = calloc(nconns, sizeof *conns);
    for (int k = 0; k < nconns; k++)
        conns[k] = open_conn(k);

    start = now_s();
    edges(start);
    active = nconns;
    for (int k = 0; k < nconns; k++)
        next_step(conns[k], 1);
    struct epoll_event evs[256];
    for (;;) {
        double t = now_s();
        edges(t);
        if (phase == DRAIN && (active == 0 || t >= deadline))
            break;
        double edge = phase == WARM ? start + warmup : phase == MEASURE ? t0 + duration : deadline;
        int ms = (int)((edge - t) * 1000) + 1;
        int n = epoll_wait(epfd, evs, 256, ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait: %s", strerror(errno));
        }
        edges(now_s());       /* before the answers that arrived after an edge */
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (evs[i].events & EPOLLOUT) {
                flush(c);
                if (c->outoff == c->outlen)
                    want_write(c, 0);
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                on_readable(c);
        }
    }
    if (active)
        fprintf(stderr, "qload: %d connections still had a request in flight after %g s of drain\n",
                active, DRAIN_SECS);
    fprintf(stderr, "qload: totals {\"pushes\": %llu, \"received\": %llu, \"empty\": %llu, \"acks\": %llu, "
            "\"in_flight\": %d}\n", t_pushes, t_received, t_empty, t_acks, active);
    for (int k = 0; k < nconns; k++)
        close(conns[k]->fd);
    double secs = t1 - t0;
    printf("{\"rate\": %.1f, \"ops\": %llu, \"seconds\": %.3f, \"client_cpu\": %.3f}\n",
           (d1 - d0) / secs, d1 - d0, secs, (c1 - c0) / secs);
    return 0;
}
