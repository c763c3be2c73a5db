/* test_image.c - the image pipeline against the real libvips: type detection
 * and refusals, blocked loaders (SVG, PDF, FITS never reach a decoder), and
 * normalisation of small images made here with libvips itself (orientation,
 * alpha, shrinking, the output size cap, truncation, pixel bombs). */
#include "image.h"
#include "test.h"
#include "validate.h"

#include <vips/vips.h>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/ppa-test-image-XXXXXX";

static void path_of(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

static void write_file(const char *name, const void *data, size_t len)
{
    char p[256];
    FILE *f;
    path_of(p, sizeof p, name);
    f = fopen(p, "wb");
    if (f) {
        fwrite(data, 1, len, f);
        fclose(f);
    }
}

static long file_size(const char *name)
{
    char p[256];
    struct stat st;
    path_of(p, sizeof p, name);
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

/* A w x h test picture: a gradient with `bands` bands; alpha (band 4) is 0 on
 * the left half when transparent is set. Saved with libvips' saver for the
 * name's suffix and any extra options in `opts` ("[Q=90]"...). */
static int make_image(const char *name, int w, int h, int bands, int transparent, int orientation)
{
    VipsImage *x = NULL, *rgb = NULL, *a = NULL, *out = NULL;
    char p[256];
    int rc = -1;

    path_of(p, sizeof p, name);
    if (vips_xyz(&x, w, h, NULL))
        goto done;
    {
        VipsImage *xy[2] = {NULL, NULL};
        VipsImage *sum = NULL;
        if (vips_extract_band(x, &xy[0], 0, NULL) || vips_extract_band(x, &xy[1], 1, NULL) ||
            vips_add(xy[0], xy[1], &sum, NULL)) {
            VIPS_UNREF(xy[0]);
            VIPS_UNREF(xy[1]);
            goto done;
        }
        {
            VipsImage *b3[3] = {xy[0], xy[1], sum};
            VipsImage *j = NULL, *u = NULL;
            if (vips_bandjoin(b3, &j, 3, NULL) == 0 && vips_cast_uchar(j, &u, NULL) == 0)
                rgb = u;
            VIPS_UNREF(j);
        }
        VIPS_UNREF(xy[0]);
        VIPS_UNREF(xy[1]);
        VIPS_UNREF(sum);
    }
    if (!rgb)
        goto done;
    if (bands == 4 && !transparent) {
        if (vips_bandjoin_const1(rgb, &a, 255.0, NULL))
            goto done;
        out = a;
        a = NULL;
    } else if (bands == 4) {
        VipsImage *xb = NULL, *mask = NULL, *m8 = NULL;
        if (vips_extract_band(x, &xb, 0, NULL) || vips_more_const1(xb, &mask, w / 2, NULL) ||
            vips_cast_uchar(mask, &m8, NULL) || vips_bandjoin2(rgb, m8, &a, NULL)) {
            VIPS_UNREF(xb);
            VIPS_UNREF(mask);
            VIPS_UNREF(m8);
            goto done;
        }
        VIPS_UNREF(xb);
        VIPS_UNREF(mask);
        VIPS_UNREF(m8);
        out = a;
        a = NULL;
    } else {
        out = rgb;
        rgb = NULL;
    }
    vips_image_set_int(out, VIPS_META_ORIENTATION, orientation);
    vips_image_set_string(out, "exif-ifd3-GPSLatitude", "48/1 51/1 3024/100 (48, 51, 30.24, Rational, 3 components, 24 bytes)");
    rc = vips_image_write_to_file(out, p, NULL);
done:
    VIPS_UNREF(x);
    VIPS_UNREF(rgb);
    VIPS_UNREF(a);
    VIPS_UNREF(out);
    if (rc)
        fprintf(stderr, "make_image %s: %s\n", name, vips_error_buffer());
    vips_error_clear();
    return rc;
}

static enum image_type detect_file(const char *name)
{
    char p[256];
    unsigned char m[IMAGE_MAGIC_LEN];
    ssize_t n;
    int fd;
    path_of(p, sizeof p, name);
    fd = open(p, O_RDONLY);
    if (fd < 0)
        return IMAGE_UNKNOWN;
    n = read(fd, m, sizeof m);
    close(fd);
    return n > 0 ? image_detect(m, (size_t)n) : IMAGE_UNKNOWN;
}

/* Normalise `name` into "out.bin"; returns the result's status (0 = ok). */
static unsigned normalize(const char *name, const struct image_limits *lim, struct image_result *res)
{
    char in[256], out[256];
    int fd;
    path_of(in, sizeof in, name);
    path_of(out, sizeof out, "out.bin");
    fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return 999;
    (void)image_normalize(in, detect_file(name), file_size(name), lim, fd, res);
    close(fd);
    return res->status;
}

static void test_detection(void)
{
    static const unsigned char heic[] = {0, 0, 0, 24, 'f', 't', 'y', 'p', 'h', 'e', 'i', 'c'};
    static const unsigned char mif1[] = {0, 0, 0, 24, 'f', 't', 'y', 'p', 'm', 'i', 'f', '1'};
    static const unsigned char avif[] = {0, 0, 0, 24, 'f', 't', 'y', 'p', 'a', 'v', 'i', 'f'};
    static const unsigned char mp4[] = {0, 0, 0, 24, 'f', 't', 'y', 'p', 'i', 's', 'o', 'm'};
    static const unsigned char cr3[] = {0, 0, 0, 24, 'f', 't', 'y', 'p', 'c', 'r', 'x', ' '};
    static const unsigned char tiff_le[] = {'I', 'I', '*', 0, 8, 0, 0, 0, 0, 0, 0, 0};
    static const unsigned char tiff_be[] = {'M', 'M', 0, '*', 0, 0, 0, 8, 0, 0, 0, 0};
    static const unsigned char cr2[] = {'I', 'I', '*', 0, 16, 0, 0, 0, 'C', 'R', 2, 0};
    static const unsigned char orf[] = {'I', 'I', 'R', 'O', 8, 0, 0, 0, 0, 0, 0, 0};
    static const unsigned char svg[] = "\xef\xbb\xbf  <svg xmlns";
    static const unsigned char pdf[] = "%PDF-1.7\n%";
    static const unsigned char fits[] = "SIMPLE  =   ";
    static const unsigned char gif[] = "GIF89a\1\0\1\0";

    TEST_ASSERT(image_detect(heic, sizeof heic) == IMAGE_HEIF, "heic brand");
    TEST_ASSERT(image_detect(mif1, sizeof mif1) == IMAGE_HEIF, "mif1 brand");
    TEST_ASSERT(image_detect(avif, sizeof avif) == IMAGE_AVIF, "avif brand");
    TEST_ASSERT(image_detect(mp4, sizeof mp4) == IMAGE_UNKNOWN, "mp4 is not an image");
    TEST_ASSERT(image_detect(tiff_le, sizeof tiff_le) == IMAGE_TIFF && image_detect(tiff_be, sizeof tiff_be) == IMAGE_TIFF,
                "tiff both byte orders");
    TEST_ASSERT(image_detect(cr2, sizeof cr2) == IMAGE_UNKNOWN, "CR2 is RAW, not TIFF");
    TEST_ASSERT(image_detect(heic, 11) == IMAGE_UNKNOWN, "short ftyp");
    TEST_ASSERT(image_refusal(cr2, sizeof cr2) && strstr(image_refusal(cr2, sizeof cr2), "export it as JPEG"), "cr2 refusal");
    TEST_ASSERT(image_refusal(cr3, sizeof cr3) && strstr(image_refusal(cr3, sizeof cr3), "RAW"), "cr3 refusal");
    TEST_ASSERT(image_refusal(orf, sizeof orf) && strstr(image_refusal(orf, sizeof orf), "RAW"), "orf refusal");
    TEST_ASSERT(image_refusal(mp4, sizeof mp4) && strstr(image_refusal(mp4, sizeof mp4), "video"), "video refusal");
    TEST_ASSERT(image_refusal(svg, sizeof svg - 1) && strstr(image_refusal(svg, sizeof svg - 1), "SVG"), "svg refusal");
    TEST_ASSERT(image_refusal(pdf, sizeof pdf - 1) && strstr(image_refusal(pdf, sizeof pdf - 1), "PDF"), "pdf refusal");
    TEST_ASSERT(image_refusal(fits, sizeof fits - 1) && strstr(image_refusal(fits, sizeof fits - 1), "FITS"), "fits");
    TEST_ASSERT(image_refusal(gif, sizeof gif - 1) && strstr(image_refusal(gif, sizeof gif - 1), "GIF"), "gif");
    TEST_ASSERT(image_refusal(tiff_le, 3) == NULL && image_refusal((const unsigned char *)"hello", 5) == NULL,
                "unknown bytes: no refusal sentence");
    TEST_ASSERT(image_is_output(IMAGE_JPEG) && image_is_output(IMAGE_WEBP) && !image_is_output(IMAGE_HEIF) &&
                    !image_is_output(IMAGE_TIFF),
                "output types");
    TEST_ASSERT(image_from_mime("image/heic") == IMAGE_HEIF && image_from_mime("image/heif") == IMAGE_HEIF &&
                    image_from_mime("image/avif") == IMAGE_AVIF && image_from_mime("image/tiff") == IMAGE_TIFF,
                "input mimes");
    TEST_ASSERT(image_from_ext("heic") == IMAGE_UNKNOWN && image_from_ext("tiff") == IMAGE_UNKNOWN,
                "only output types are stored names");
    TEST_ASSERT(stored_name_check("0f8fad5b-d9cb-469f-a165-70867728950e.heic") == IMAGE_UNKNOWN, "no stored heic");
}

/* libvips can load these formats, but every loader but ours is blocked. */
static void test_blocked_loaders(void)
{
    static const char svg[] = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\">"
                              "<rect width=\"10\" height=\"10\"/></svg>";
    static const char pdf[] = "%PDF-1.1\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
                              "2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
                              "3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 10 10]>>endobj\n"
                              "trailer<</Root 1 0 R>>\n%%EOF\n";
    char fits[2880];
    const char *names[] = {"doc.svg", "doc.pdf", "image.fits"};
    char p[256];

    memset(fits, ' ', sizeof fits);
    memcpy(fits, "SIMPLE  =                    T", 30);
    memcpy(fits + 80, "BITPIX  =                    8", 30);
    memcpy(fits + 160, "NAXIS   =                    0", 30);
    memcpy(fits + 240, "END", 3);
    write_file("doc.svg", svg, sizeof svg - 1);
    write_file("doc.pdf", pdf, sizeof pdf - 1);
    write_file("image.fits", fits, sizeof fits);
    for (size_t i = 0; i < 3; i++) {
        VipsImage *im;
        path_of(p, sizeof p, names[i]);
        im = vips_image_new_from_file(p, NULL);
        TEST_ASSERT(im == NULL && strstr(vips_error_buffer(), "is blocked"), "%s: libvips refuses to open it (%s)",
                    names[i], vips_error_buffer());
        VIPS_UNREF(im);
        vips_error_clear();
        TEST_ASSERT(detect_file(names[i]) == IMAGE_UNKNOWN, "%s: not detected as an image", names[i]);
    }
    /* and ours still load */
    TEST_ASSERT(make_image("ok.png", 8, 8, 3, 0, 1) == 0, "make png");
    path_of(p, sizeof p, "ok.png");
    TEST_ASSERT(vips_foreign_find_load(p) != NULL, "png still loads");
    vips_error_clear();
}

static void test_normalize(void)
{
    struct image_limits lim = {.max_side = 64, .max_pixels = 1000000, .max_output = IMAGE_KIE_MAX_BYTES};
    struct image_result res;
    VipsImage *out;
    char p[256];
    const char *loader = NULL;

    path_of(p, sizeof p, "out.bin");

    /* orientation 6: a 200x100 landscape file is stored as 32x64 portrait */
    TEST_ASSERT(make_image("rot.jpg", 200, 100, 3, 0, 6) == 0, "make rot.jpg");
    TEST_ASSERT(normalize("rot.jpg", &lim, &res) == 0, "rot.jpg: %s", res.message);
    TEST_ASSERT(res.orientation == 6 && res.original.width == 100 && res.original.height == 200, "upright original");
    TEST_ASSERT(res.stored.type == IMAGE_JPEG && res.stored.width == 32 && res.stored.height == 64,
                "stored %ldx%ld", res.stored.width, res.stored.height);
    out = vips_image_new_from_file(p, NULL);
    TEST_ASSERT(out && vips_image_get_width(out) == 32 && vips_image_get_height(out) == 64, "file is upright");
    TEST_ASSERT(out && vips_image_get_orientation(out) == 1, "no orientation tag left");
    TEST_ASSERT(out && vips_image_get_typeof(out, "exif-data") == 0, "no EXIF at all by default");
    TEST_ASSERT(out && vips_image_get_string(out, "vips-loader", &loader) == 0 && strcmp(loader, "jpegload") == 0,
                "stored as JPEG");
    TEST_ASSERT(res.stored.size == file_size("out.bin"), "size reported");
    VIPS_UNREF(out);

    /* KEEP_METADATA: GPS still goes */
    lim.keep_metadata = 1;
    TEST_ASSERT(normalize("rot.jpg", &lim, &res) == 0, "keep: %s", res.message);
    out = vips_image_new_from_file(p, NULL);
    TEST_ASSERT(out && vips_image_get_typeof(out, "exif-ifd3-GPSLatitude") == 0, "GPS removed with KEEP_METADATA");
    VIPS_UNREF(out);
    lim.keep_metadata = 0;

    /* real transparency: PNG; opaque alpha: JPEG */
    TEST_ASSERT(make_image("alpha.png", 40, 20, 4, 1, 1) == 0, "make alpha.png");
    TEST_ASSERT(normalize("alpha.png", &lim, &res) == 0 && res.stored.type == IMAGE_PNG && res.stored.width == 40,
                "alpha.png -> PNG (%s)", res.message);
    TEST_ASSERT(make_image("opaque.png", 40, 20, 4, 0, 1) == 0, "make opaque.png");
    TEST_ASSERT(normalize("opaque.png", &lim, &res) == 0 && res.stored.type == IMAGE_JPEG, "opaque alpha -> JPEG (%s %s)",
                image_mime(res.stored.type), res.message);

    /* WEBP, TIFF in; never upscaled; 0 = no shrink */
    TEST_ASSERT(make_image("small.webp", 30, 20, 3, 0, 1) == 0 && make_image("t.tif", 300, 100, 3, 0, 1) == 0,
                "make webp, tiff");
    TEST_ASSERT(normalize("small.webp", &lim, &res) == 0 && res.stored.width == 30 && res.stored.height == 20,
                "small image kept at its size");
    TEST_ASSERT(normalize("t.tif", &lim, &res) == 0 && res.original.type == IMAGE_TIFF && res.stored.width == 64 &&
                    res.stored.height == 21,
                "tiff shrunk to %ldx%ld", res.stored.width, res.stored.height);
    lim.max_side = 0;
    TEST_ASSERT(normalize("t.tif", &lim, &res) == 0 && res.stored.width == 300, "IMAGE_MAX_SIDE=0 keeps the size");
    lim.max_side = 64;

    /* the output cap: lower quality, then smaller, never over */
    lim.max_output = 1500;
    lim.max_side = 0;
    TEST_ASSERT(make_image("big.png", 400, 300, 3, 0, 1) == 0, "make big.png");
    TEST_ASSERT(normalize("big.png", &lim, &res) == 0, "capped: %s", res.message);
    TEST_ASSERT(res.stored.size <= 1500 && file_size("out.bin") <= 1500 && res.stored.width < 400,
                "within the cap: %lld bytes, %ldx%ld", res.stored.size, res.stored.width, res.stored.height);
    lim.max_output = IMAGE_KIE_MAX_BYTES;
    lim.max_side = 64;

    /* pixel bomb: refused from the header */
    lim.max_pixels = 10000;
    TEST_ASSERT(normalize("big.png", &lim, &res) == 413 && strcmp(res.code, "too_many_pixels") == 0,
                "too many pixels: %u %s", res.status, res.code);
    lim.max_pixels = 1000000;

    /* truncated JPEG: decoded to the end or refused */
    {
        char in[256];
        long n = file_size("rot.jpg");
        path_of(in, sizeof in, "rot.jpg");
        TEST_ASSERT(truncate(in, n / 2) == 0, "truncate");
        TEST_ASSERT(normalize("rot.jpg", &lim, &res) == 422 && strcmp(res.code, "unreadable_image") == 0,
                    "truncated: %u %s", res.status, res.code);
    }
    /* a 3-byte "JPEG" */
    write_file("tiny.jpg", "\xff\xd8\xff", 3);
    TEST_ASSERT(normalize("tiny.jpg", &lim, &res) == 422, "tiny jpeg: %u", res.status);
}

int main(void)
{
    char err[256];

    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    TEST_ASSERT(image_lib_init("test_image", 1, err, sizeof err) == 0, "init: %s", err);
    test_detection();
    test_blocked_loaders();
    test_normalize();
    image_lib_thread_done();
    {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "%s", dir);
        /* remove the test files */
        const char *names[] = {"doc.svg", "doc.pdf", "image.fits", "ok.png", "rot.jpg", "alpha.png", "opaque.png",
                               "small.webp", "t.tif", "big.png", "tiny.jpg", "out.bin"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            char p[256];
            path_of(p, sizeof p, names[i]);
            unlink(p);
        }
        rmdir(cmd);
    }
    image_lib_shutdown();
    return test_report();
}
