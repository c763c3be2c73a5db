/* fuzz_image.c - the image pipeline (image_normalize) on arbitrary bytes.
 *
 * Each input is written to a file and, when image_detect takes it for one of
 * the accepted types, normalised with small limits (longest side 64 px, 1 MP,
 * 64 KB out) so that the fuzzer explores decoders rather than waiting on big
 * pictures. Inputs that are not detected are checked to be refused the way
 * the upload path refuses them. Checks: a success wrote exactly the announced
 * bytes, a JPEG or PNG, within the limits, with upright dimensions that fit
 * the box; a failure is one of the pipeline's answers (413/415/422) with a
 * message; libvips' error state is clean between inputs. ASan/UBSan cover the
 * rest (libvips itself is not instrumented: its bugs show as crashes). */
#include "fuzz_check.h"
#include "image.h"
#include "log.h"
#include "validate.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUZZ_SIDE 64
#define FUZZ_PIXELS (1024LL * 1024)
#define FUZZ_OUT (64LL * 1024)

static char g_in[512];
static char g_out[512];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void cleanup(void)
{
    unlink(g_in);
    unlink(g_out);
    image_lib_shutdown();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");
    char err[256];
    (void)argc;
    (void)argv;
    log_setup(LOG_ERROR, 0);
    FUZZ_CHECK(image_lib_init("fuzz_image", 1, err, sizeof err) == 0, "%s", err);
    snprintf(g_in, sizeof g_in, "%s/ppa-fuzz-image-in-%ld", tmp && *tmp ? tmp : "/tmp", (long)getpid());
    snprintf(g_out, sizeof g_out, "%s/ppa-fuzz-image-out-%ld", tmp && *tmp ? tmp : "/tmp", (long)getpid());
    atexit(cleanup);
    return 0;
}

static void write_input(const uint8_t *data, size_t size)
{
    int fd = open(g_in, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0, "open %s: %s", g_in, strerror(errno));
    for (size_t off = 0; off < size;) {
        ssize_t w = write(fd, data + off, size - off);
        FUZZ_CHECK(w > 0, "write: %s", strerror(errno));
        off += (size_t)w;
    }
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct image_limits lim = {FUZZ_SIDE, FUZZ_PIXELS, FUZZ_OUT, (int)(size & 1)};
    struct image_result res;
    enum image_type t = image_detect(data, size < IMAGE_MAGIC_LEN ? size : IMAGE_MAGIC_LEN);
    struct stat st;
    int fd;
    int rc;

    if (t == IMAGE_UNKNOWN) {
        const char *why = image_refusal(data, size < IMAGE_MAGIC_LEN ? size : IMAGE_MAGIC_LEN);
        FUZZ_CHECK(!why || strlen(why) > 20, "a refusal without a sentence");
        return 0;
    }
    write_input(data, size);
    fd = open(g_out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0, "open %s: %s", g_out, strerror(errno));
    rc = image_normalize(g_in, t, (long long)size, &lim, fd, &res);
    FUZZ_CHECK(fstat(fd, &st) == 0, "fstat");
    close(fd);
    if (rc == 0) {
        FUZZ_CHECK(res.status == 0, "success with status %u", res.status);
        FUZZ_CHECK(res.stored.type == IMAGE_JPEG || res.stored.type == IMAGE_PNG, "stored type %d", res.stored.type);
        FUZZ_CHECK(res.stored.size == (long long)st.st_size && st.st_size > 0 && res.stored.size <= FUZZ_OUT,
                   "stored %lld bytes, file has %lld", res.stored.size, (long long)st.st_size);
        FUZZ_CHECK(res.stored.width >= 1 && res.stored.height >= 1 && res.stored.width <= FUZZ_SIDE &&
                       res.stored.height <= FUZZ_SIDE,
                   "stored %ldx%ld, box %d", res.stored.width, res.stored.height, FUZZ_SIDE);
        FUZZ_CHECK(res.original.width * res.original.height <= FUZZ_PIXELS, "accepted %ldx%ld over the pixel limit",
                   res.original.width, res.original.height);
        FUZZ_CHECK(res.original.type == t && res.original.size == (long long)size, "original metadata");
    } else {
        FUZZ_CHECK(res.status == 413 || res.status == 415 || res.status == 422, "status %u (%s: %s)", res.status,
                   res.code, res.message);
        FUZZ_CHECK(res.code[0] && strlen(res.message) > 20, "failure without code or message");
    }
    return 0;
}
