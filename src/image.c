/* image.c - see image.h.
 *
 * One normalisation is: read the header with the loader for the detected
 * type (cheap: no pixels), refuse bombs from its size, then run
 * vips_thumbnail on the file - libvips' fastest path: shrink-on-load for JPEG
 * (libjpeg's DCT scaling) and WEBP, the EXIF orientation applied, colour
 * managed to sRGB - and encode to memory. Since every other loader is
 * blocked, vips_thumbnail can only reach the five we allow, and the loader it
 * used is checked against the detected type. A file that cannot be read to the
 * end (fail_on=truncated) fails when its pixels are computed, at encode time.
 * When the encoded image is over max_output, it is made again at a lower
 * JPEG quality, then a smaller size. */
#include "image.h"
#include "err.h"
#include "log.h"
#include "spool.h"

#include <vips/vips.h>

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define JPEG_QUALITY 90
#define JPEG_QUALITY_MIN 60
#define JPEG_QUALITY_STEP 10
#define PNG_COMPRESSION 6
#define MAX_ATTEMPTS 12
#define NO_SHRINK_SIDE 10000000 /* VIPS_MAX_COORD: "as large as it is" */

/* The loaders we allow, by class (unblocking a class unblocks its file,
 * buffer and source subclasses), and the nickname each one leaves in an
 * image's "vips-loader" field. */
static const struct {
    enum image_type type;
    const char *class_name;
    const char *nickname;
} LOADERS[] = {
    {IMAGE_JPEG, "VipsForeignLoadJpeg", "jpegload"}, {IMAGE_PNG, "VipsForeignLoadPng", "pngload"},
    {IMAGE_WEBP, "VipsForeignLoadWebp", "webpload"}, {IMAGE_HEIF, "VipsForeignLoadHeif", "heifload"},
    {IMAGE_AVIF, "VipsForeignLoadHeif", "heifload"}, {IMAGE_TIFF, "VipsForeignLoadTiff", "tiffload"},
};
#define N_LOADERS (sizeof LOADERS / sizeof LOADERS[0])

/* EXIF fields that say where a photo was taken or who took it (libvips names
 * them "exif-ifd<N>-<Tag>"; IFD 3 is GPS, IFD 1 the embedded thumbnail). */
static const char *const PRIVATE_EXIF[] = {
    "SerialNumber", "OwnerName", "Artist", "MakerNote", "UserComment", "ImageUniqueID", "HostComputer",
    "CameraOwner", "XPAuthor", "XPComment", "SubjectLocation", "ImageDescription",
};

/* libvips warns through GLib's log ("error in tile 0 x 40"): into ours, at
 * debug level, since every failure is also reported by an error return. */
static void on_glib_log(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer data)
{
    (void)level;
    (void)data;
    log_debug("%s: %s", domain ? domain : "glib", message);
}

/* libvips is process-wide state: it is started once, by the first caller of
 * image_lib_ready (the first upload) or by image_lib_init, never twice. */
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_threads = 1;     /* set before the once runs */
static int lib_rc = ERR_IO;
static int lib_started;
static char lib_err[256];

static void lib_start(void)
{
    g_log_set_handler("VIPS", (GLogLevelFlags)(G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO), on_glib_log,
                      NULL);
    if (VIPS_INIT("product-photo-api")) {
        snprintf(lib_err, sizeof lib_err, "libvips cannot start: %s", vips_error_buffer());
        vips_error_clear();
        return;
    }
    /* a long-running server: no operation cache (every upload is a new
     * file), a fixed number of threads per pipeline */
    vips_cache_set_max(0);
    vips_cache_set_max_mem(0);
    vips_cache_set_max_files(0);
    vips_concurrency_set(lib_threads);
    /* attack surface: only the loaders we call */
    vips_block_untrusted_set(TRUE);
    vips_operation_block_set("VipsForeignLoad", TRUE);
    for (size_t i = 0; i < N_LOADERS; i++)
        vips_operation_block_set(LOADERS[i].class_name, FALSE);
    lib_started = 1;
    lib_rc = 0;
}

void image_lib_configure(int threads)
{
    lib_threads = threads > 0 ? threads : 1;
}

int image_lib_ready(char *err, size_t cap)
{
    pthread_once(&lib_once, lib_start);
    if (lib_rc && err && cap)
        snprintf(err, cap, "%s", lib_err);
    return lib_rc;
}

int image_lib_init(const char *argv0, int threads, char *err, size_t cap)
{
    (void)argv0;
    image_lib_configure(threads);
    return image_lib_ready(err, cap);
}

void image_lib_thread_done(void)
{
    if (lib_started)
        vips_thread_shutdown();
}

void image_lib_shutdown(void)
{
    if (lib_started)
        vips_shutdown();
}

static void fail(struct image_result *res, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail(struct image_result *res, unsigned status, const char *code, const char *fmt, ...)
{
    va_list ap;
    if (res->status)
        return;
    res->status = status;
    snprintf(res->code, sizeof res->code, "%s", code);
    va_start(ap, fmt);
    vsnprintf(res->message, sizeof res->message, fmt, ap);
    va_end(ap);
}

/* Log libvips' error text (it is global and shared by all threads, so it may
 * hold another thread's words too) and clear it. */
static void log_vips_error(const char *what)
{
    char *msg = vips_error_buffer_copy();
    size_t n = msg ? strlen(msg) : 0;
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (msg[i] == '\n')
            msg[i] = ' ';
    log_warn("image: %s: %.300s", what, msg && *msg ? msg : "(no detail)");
    g_free(msg);
}

static const char *loader_nickname(enum image_type t)
{
    for (size_t i = 0; i < N_LOADERS; i++)
        if (LOADERS[i].type == t)
            return LOADERS[i].nickname;
    return NULL;
}

/* Open only the header, with the loader for `type`. */
static VipsImage *load_header(const char *path, enum image_type type)
{
    VipsImage *im = NULL;
    int rc = -1;

    switch (type) {
    case IMAGE_JPEG:
        rc = vips_jpegload(path, &im, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", VIPS_FAIL_ON_TRUNCATED, NULL);
        break;
    case IMAGE_PNG:
        rc = vips_pngload(path, &im, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", VIPS_FAIL_ON_TRUNCATED, NULL);
        break;
    case IMAGE_WEBP:
        rc = vips_webpload(path, &im, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", VIPS_FAIL_ON_TRUNCATED, NULL);
        break;
    case IMAGE_HEIF:
    case IMAGE_AVIF:
        rc = vips_heifload(path, &im, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", VIPS_FAIL_ON_TRUNCATED, NULL);
        break;
    case IMAGE_TIFF:
        rc = vips_tiffload(path, &im, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", VIPS_FAIL_ON_TRUNCATED, NULL);
        break;
    default:
        break;
    }
    return rc == 0 ? im : NULL;
}

static int is_private_field(const char *name)
{
    if (strncmp(name, "exif-ifd3-", 10) == 0 || strncmp(name, "exif-ifd1-", 10) == 0)
        return 1; /* GPS; the embedded thumbnail's IFD */
    if (strcmp(name, "xmp-data") == 0 || strcmp(name, "iptc-data") == 0 || strncmp(name, "jpeg-thumbnail", 14) == 0 ||
        strncmp(name, "heif-", 5) == 0 || strncmp(name, "png-comment", 11) == 0)
        return 1; /* free-form blocks that may carry anything, GPS included */
    if (strncmp(name, "exif-", 5) == 0)
        for (size_t i = 0; i < sizeof PRIVATE_EXIF / sizeof PRIVATE_EXIF[0]; i++)
            if (strstr(name, PRIVATE_EXIF[i]))
                return 1;
    return 0;
}

/* KEEP_METADATA=1: drop every field that could locate or identify someone;
 * libvips rebuilds the EXIF block from the fields that remain. */
static void remove_private_fields(VipsImage *im)
{
    gchar **fields = vips_image_get_fields(im);
    for (gchar **f = fields; f && *f; f++)
        if (is_private_field(*f))
            (void)vips_image_remove(im, *f);
    g_strfreev(fields);
}

struct encoded {
    void *buf; /* g_malloc'd */
    size_t len;
    enum image_type type;
    long width, height;
};

/* 1 when the image has an alpha band that is not fully opaque. */
static int has_real_alpha(VipsImage *im, int *err)
{
    VipsImage *alpha = NULL;
    const double opaque = 255.0; /* im is 8-bit sRGB(A) */
    double min = opaque;

    *err = 0;
    if (!vips_image_hasalpha(im))
        return 0;
    if (vips_extract_band(im, &alpha, im->Bands - 1, NULL) || vips_min(alpha, &min, NULL)) {
        *err = 1;
        min = opaque;
    }
    VIPS_UNREF(alpha);
    return min < opaque;
}

/* One attempt: thumbnail `path` to fit `side`, sRGB 8-bit, then encode. */
static int encode_once(const char *path, enum image_type type, long side, int quality, const struct image_limits *lim,
                       struct encoded *out, struct image_result *res)
{
    VipsImage *thumb = NULL;
    VipsImage *srgb = NULL;
    VipsImage *mem = NULL;
    VipsImage *flat = NULL;
    VipsImage *final = NULL;
    const char *loader = NULL;
    const char *want = loader_nickname(type);
    int alpha_err = 0;
    int strip = !lim->keep_metadata;
    int rc = ERR_IO;

    if (vips_thumbnail(path, &thumb, (int)side, "height", (int)side, "size", VIPS_SIZE_DOWN, "fail_on",
                       VIPS_FAIL_ON_TRUNCATED, NULL)) {
        log_vips_error("thumbnail");
        fail(res, 422, "unreadable_image",
             "The image could not be decoded: the file is damaged or incomplete. Export it again from your "
             "phone or photo editor and upload that.");
        goto out;
    }
    if (vips_image_get_string(thumb, "vips-loader", &loader) || !want || strcmp(loader, want) != 0) {
        log_warn("image: libvips read the file with %s, not %s", loader ? loader : "?", want ? want : "?");
        fail(res, 415, "unsupported_media_type", "The file's content does not match its image type.");
        goto out;
    }
    /* 16-bit, greyscale, CMYK without a profile...: 8-bit sRGB for KIE */
    if (vips_colourspace(thumb, &srgb, VIPS_INTERPRETATION_sRGB, NULL)) {
        log_vips_error("colourspace");
        fail(res, 422, "unreadable_image", "The image's colours could not be converted to sRGB.");
        goto out;
    }
    if (vips_image_get_format(srgb) != VIPS_FORMAT_UCHAR) {
        VipsImage *u = NULL;
        if (vips_cast_uchar(srgb, &u, NULL))
            goto vips_failed;
        VIPS_UNREF(srgb);
        srgb = u;
    }
    if (vips_image_hasalpha(srgb)) {
        /* deciding JPEG or PNG needs the pixels: compute them once */
        mem = vips_image_copy_memory(srgb);
        if (!mem) {
            log_vips_error("decode");
            fail(res, 422, "unreadable_image",
                 "The image could not be decoded to the end: the file is damaged or incomplete. Export it "
                 "again and upload that.");
            goto out;
        }
        if (has_real_alpha(mem, &alpha_err)) {
            out->type = IMAGE_PNG;
            final = mem;
            mem = NULL;
        } else {
            if (alpha_err || vips_extract_band(mem, &flat, 0, "n", mem->Bands - 1, NULL))
                goto vips_failed;
            out->type = IMAGE_JPEG;
            final = flat;
            flat = NULL;
        }
    } else {
        out->type = IMAGE_JPEG;
        final = srgb;
        srgb = NULL;
    }
    if (!strip) {
        VipsImage *copy = NULL;
        if (vips_copy(final, &copy, NULL))
            goto vips_failed;
        VIPS_UNREF(final);
        final = copy;
        remove_private_fields(final);
    }
    out->width = vips_image_get_width(final);
    out->height = vips_image_get_height(final);
    if (out->type == IMAGE_JPEG)
        rc = vips_jpegsave_buffer(final, &out->buf, &out->len, "Q", quality, "interlace", FALSE, "strip", strip,
                                  NULL);
    else
        rc = vips_pngsave_buffer(final, &out->buf, &out->len, "compression", PNG_COMPRESSION, "strip", strip, NULL);
    if (rc) {
        log_vips_error("encode");
        fail(res, 422, "unreadable_image",
             "The image could not be decoded to the end: the file is damaged or incomplete. Export it again "
             "from your phone or photo editor and upload that.");
        rc = ERR_INVALID;
        goto out;
    }
    rc = 0;
    goto out;
vips_failed:
    log_vips_error("pipeline");
    fail(res, 500, "image_error", "The server could not process the image.");
    rc = ERR_IO;
out:
    VIPS_UNREF(thumb);
    VIPS_UNREF(srgb);
    VIPS_UNREF(mem);
    VIPS_UNREF(flat);
    VIPS_UNREF(final);
    return rc ? (res->status ? rc : ERR_IO) : 0;
}

/* DNG, NEF, ARW...: TIFF containers whose first image is a RAW's preview. */
static int tiff_raw(const char *path)
{
    unsigned char head[65536];
    ssize_t n = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        n = pread(fd, head, sizeof head, 0);
        close(fd);
    }
    return n > 0 && tiff_is_raw(head, (size_t)n);
}

int image_normalize(const char *in_path, enum image_type type, long long in_size, const struct image_limits *lim,
                    int out_fd, struct image_result *res)
{
    VipsImage *hdr = NULL;
    struct encoded enc = {0};
    long long pixels;
    long w, h, longest, side;
    int quality = JPEG_QUALITY;
    int rc = ERR_INVALID;

    memset(res, 0, sizeof *res);
    res->original.type = type;
    res->original.size = in_size;
    if (image_lib_ready(NULL, 0)) {
        log_error("image: %s", lib_err);
        fail(res, 500, "image_error", "The server cannot process images right now (its image library did not start).");
        return ERR_IO;
    }
    if (!loader_nickname(type)) {
        fail(res, 415, "unsupported_media_type", "This image type is not supported.");
        return ERR_UNSUPPORTED;
    }
    if (type == IMAGE_TIFF && tiff_raw(in_path)) {
        fail(res, 415, "unsupported_media_type", "%s", IMAGE_RAW_REFUSAL);
        goto out;
    }
    hdr = load_header(in_path, type);
    if (!hdr) {
        log_vips_error("header");
        fail(res, 422, "unreadable_image",
             "The file starts like a %s image but its header cannot be read: it is damaged or not really an "
             "image. Export it again from your phone or photo editor and upload that.",
             type == IMAGE_HEIF ? "HEIC" : type == IMAGE_AVIF ? "AVIF" : image_ext(type));
        goto out;
    }
    w = vips_image_get_width(hdr);
    h = vips_image_get_height(hdr);
    res->orientation = vips_image_get_orientation(hdr);
    pixels = (long long)w * (long long)h;
    if (res->orientation >= 5 && res->orientation <= 8) {
        long t = w;
        w = h;
        h = t;
    }
    res->original.width = w;
    res->original.height = h;
    if (pixels > lim->max_pixels) {
        fail(res, 413, "too_many_pixels",
             "The image is %ld x %ld pixels (%.1f megapixels); this server accepts at most %.1f megapixels "
             "(IMAGE_MAX_PIXELS). Resize it and upload it again.",
             w, h, (double)pixels / 1e6, (double)lim->max_pixels / 1e6);
        goto out;
    }
    VIPS_UNREF(hdr);
    longest = w > h ? w : h;
    side = lim->max_side > 0 && lim->max_side < longest ? lim->max_side : NO_SHRINK_SIDE;
    for (int attempt = 0;; attempt++) {
        rc = encode_once(in_path, type, side, quality, lim, &enc, res);
        if (rc)
            goto out;
        if ((long long)enc.len <= lim->max_output)
            break;
        if (attempt + 1 >= MAX_ATTEMPTS) {
            fail(res, 422, "image_too_detailed", "The image cannot be made smaller than %lld bytes.",
                 lim->max_output);
            rc = ERR_TOO_LARGE;
            goto out;
        }
        log_info("image: %ld x %ld %s is %zu bytes, over %lld: encoding again smaller", enc.width, enc.height,
                 image_ext(enc.type), enc.len, lim->max_output);
        if (enc.type == IMAGE_JPEG && quality - JPEG_QUALITY_STEP >= JPEG_QUALITY_MIN) {
            quality -= JPEG_QUALITY_STEP;
        } else {
            long cur = enc.width > enc.height ? enc.width : enc.height;
            side = cur * 3 / 4;
            if (side < 16)
                side = 16;
        }
        g_free(enc.buf);
        enc.buf = NULL;
    }
    if (spool_write_all(out_fd, enc.buf, enc.len)) {
        fail(res, errno == ENOSPC ? 507 : 500, errno == ENOSPC ? "insufficient_storage" : "storage_error",
             "The server could not store the image.");
        rc = ERR_IO;
        goto out;
    }
    res->stored.type = enc.type;
    res->stored.width = enc.width;
    res->stored.height = enc.height;
    res->stored.size = (long long)enc.len;
    rc = 0;
out:
    VIPS_UNREF(hdr);
    g_free(enc.buf);
    vips_error_clear();
    return rc;
}
