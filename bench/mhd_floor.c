/* mhd_floor.c - the benchmark's "libmicrohttpd alone" server: answers every
 * GET with one file through MHD_create_response_from_fd, with the daemon flags
 * product-photo-api uses (internal poll() thread pool, turbo, the same
 * connection memory limit) and nothing else: no routing, validation, extra
 * headers or logging. Its req/s for GET /files is the ceiling our server can
 * reach on libmicrohttpd, measured in the same run as ours and nginx.
 *
 *   mhd_floor FILE PORT THREADS POOL_BYTES     (listens on 127.0.0.1:PORT) */
#include <microhttpd.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *data, size_t *size, void **state)
{
    const char *path = cls;
    struct MHD_Response *r;
    struct stat st;
    enum MHD_Result ret;
    int fd;

    (void)url;
    (void)version;
    (void)data;
    (void)size;
    if (!*state) { /* first call: headers only */
        *state = (void *)1;
        return MHD_YES;
    }
    if (strcmp(method, "GET") != 0)
        return MHD_NO;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        return MHD_NO;
    }
    r = MHD_create_response_from_fd64((uint64_t)st.st_size, fd); /* MHD closes fd */
    if (!r) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "image/jpeg");
    ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa;
    struct MHD_Daemon *d;
    sigset_t sigs;
    int sig;

    if (argc != 5) {
        fprintf(stderr, "usage: %s FILE PORT THREADS POOL_BYTES\n", argv[0]);
        return 2;
    }
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(argv[2]));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    d = MHD_start_daemon(MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_TURBO, 0, NULL, NULL, on_request,
                         argv[1], MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE,
                         (unsigned)atoi(argv[3]), MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)atol(argv[4]),
                         MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "mhd_floor: cannot listen on 127.0.0.1:%s\n", argv[2]);
        return 1;
    }
    printf("listening on port %s\n", argv[2]);
    fflush(stdout);
    sigwait(&sigs, &sig);
    MHD_stop_daemon(d);
    return 0;
}
