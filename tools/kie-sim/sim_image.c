/*
 * sim_image.c - image sniffing, the simulated result and the gradient PNG for
 * kie-sim (see sim_image.h).
 *
 * Result pipeline: the sniffed type's own libvips loader (never the generic
 * one) on the memory buffer -> autorot -> thumbnail_image into the product
 * box (84 % of the canvas, up- or down-scaled, no crop) -> sRGB 8-bit ->
 * composited in plain C over a vertical light-grey gradient -> a 5x7 bitmap
 * "SIMULATED" on a light plate in the bottom-right corner -> pngsave_buffer.
 *
 * Gradient PNG layout written here: 8-byte signature, IHDR (8-bit RGB, no
 * interlace), one IDAT holding the zlib stream of rows (each prefixed by
 * filter byte 0), IEND. Every chunk is length | type | data | CRC-32(type +
 * data).
 */
#include "sim_image.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>
#include <zlib.h>

#define SIM_AREA_1K     (1024.0 * 1024.0)
#define SIM_AREA_2K     (2048.0 * 2048.0)
#define SIM_BOX_PERMILLE 840u /* product box: 84 % of the canvas each way */
#define SIM_PNG_LEVEL   3     /* zlib level: results are big, keep them quick */

static const unsigned char sim_png_sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};

static uint32_t sim_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static uint32_t sim_be16(const unsigned char *p)
{
    return ((uint32_t)p[0] << 8) | (uint32_t)p[1];
}

static uint32_t sim_le24(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16);
}

static void sim_put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Walk JPEG marker segments until a SOFn frame header gives the size. */
static void sim_jpeg_dims(const unsigned char *p, size_t len, uint32_t *w, uint32_t *h)
{
    size_t i = 2;

    while (i + 4 <= len) {
        unsigned m;
        uint32_t seg;

        if (p[i] != 0xFF)
            return;
        m = p[i + 1];
        if (m == 0xFF) { /* fill byte */
            i++;
            continue;
        }
        if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) { /* no length */
            i += 2;
            continue;
        }
        if (m == 0xD9 || m == 0xDA) /* EOI / start of scan: no frame header seen */
            return;
        seg = sim_be16(p + i + 2);
        if (seg < 2)
            return;
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            if (i + 9 > len)
                return;
            *h = sim_be16(p + i + 5);
            *w = sim_be16(p + i + 7);
            return;
        }
        i += 2 + (size_t)seg;
    }
}

/* WEBP: RIFF container, first chunk is VP8 (lossy), VP8L (lossless) or VP8X. */
static void sim_webp_dims(const unsigned char *p, size_t len, uint32_t *w, uint32_t *h)
{
    if (len >= 30 && memcmp(p + 12, "VP8 ", 4) == 0) {
        *w = ((uint32_t)p[26] | ((uint32_t)p[27] << 8)) & 0x3FFFu;
        *h = ((uint32_t)p[28] | ((uint32_t)p[29] << 8)) & 0x3FFFu;
    } else if (len >= 25 && memcmp(p + 12, "VP8L", 4) == 0) {
        uint32_t b0 = p[21], b1 = p[22], b2 = p[23], b3 = p[24];
        *w = 1 + (((b1 & 0x3Fu) << 8) | b0);
        *h = 1 + (((b3 & 0x0Fu) << 10) | (b2 << 2) | ((b1 & 0xC0u) >> 6));
    } else if (len >= 30 && memcmp(p + 12, "VP8X", 4) == 0) {
        *w = 1 + sim_le24(p + 24);
        *h = 1 + sim_le24(p + 27);
    }
}

enum sim_image_type sim_image_sniff(const unsigned char *data, size_t len,
                                    uint32_t *width, uint32_t *height)
{
    enum sim_image_type t = SIM_IMAGE_NONE;
    uint32_t w = 0, h = 0;

    if (len >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) {
        t = SIM_IMAGE_JPEG;
        sim_jpeg_dims(data, len, &w, &h);
    } else if (len >= 8 && memcmp(data, sim_png_sig, 8) == 0) {
        t = SIM_IMAGE_PNG;
        if (len >= 24 && memcmp(data + 12, "IHDR", 4) == 0) {
            w = sim_be32(data + 16);
            h = sim_be32(data + 20);
        }
    } else if (len >= 12 && memcmp(data, "RIFF", 4) == 0 && memcmp(data + 8, "WEBP", 4) == 0) {
        t = SIM_IMAGE_WEBP;
        sim_webp_dims(data, len, &w, &h);
    }
    if (width)
        *width = w;
    if (height)
        *height = h;
    return t;
}

/* Finish the chunk at p whose len data bytes are already at p + 8: write the
 * length, type and CRC. Returns the chunk's total size. */
static size_t sim_png_chunk(unsigned char *p, const char *type, uint32_t len)
{
    uLong crc;

    sim_put_be32(p, len);
    memcpy(p + 4, type, 4);
    crc = crc32(0L, p + 4, (uInt)len + 4u);
    sim_put_be32(p + 8 + len, (uint32_t)crc);
    return (size_t)len + 12;
}

int sim_png_render(uint32_t width, uint32_t height, uint32_t seed,
                   unsigned char **out, size_t *out_len)
{
    unsigned char *raw = NULL, *png = NULL;
    size_t stride, raw_len, cap, pos;
    uLong bound;
    uLongf zlen;
    int ret = -1;

    *out = NULL;
    *out_len = 0;
    if (width == 0 || height == 0 || width > SIM_PNG_MAX_DIM || height > SIM_PNG_MAX_DIM)
        goto out;
    stride = 1 + (size_t)width * 3;
    raw_len = stride * height;
    raw = malloc(raw_len);
    if (!raw)
        goto out;
    for (uint32_t y = 0; y < height; y++) {
        unsigned char *row = raw + (size_t)y * stride;

        row[0] = 0; /* filter: none */
        for (uint32_t x = 0; x < width; x++) {
            unsigned char *px = row + 1 + (size_t)x * 3;
            uint32_t checker = ((x / 32) + (y / 32)) & 1u;

            px[0] = (unsigned char)((x * 255u) / (width > 1 ? width - 1 : 1));
            px[1] = (unsigned char)((y * 255u) / (height > 1 ? height - 1 : 1));
            px[2] = (unsigned char)(checker ? (seed & 0xFFu) : ((seed >> 8) & 0xFFu));
        }
    }
    bound = compressBound((uLong)raw_len);
    cap = sizeof sim_png_sig + (12 + 13) + (12 + (size_t)bound) + 12;
    png = malloc(cap);
    if (!png)
        goto out;
    memcpy(png, sim_png_sig, sizeof sim_png_sig);
    pos = sizeof sim_png_sig;

    sim_put_be32(png + pos + 8, width);
    sim_put_be32(png + pos + 12, height);
    png[pos + 16] = 8; /* bit depth */
    png[pos + 17] = 2; /* colour type: RGB */
    png[pos + 18] = 0; /* compression */
    png[pos + 19] = 0; /* filter method */
    png[pos + 20] = 0; /* no interlace */
    pos += sim_png_chunk(png + pos, "IHDR", 13);

    zlen = bound;
    if (compress2(png + pos + 8, &zlen, raw, (uLong)raw_len, 6) != Z_OK || zlen > UINT32_MAX)
        goto out;
    pos += sim_png_chunk(png + pos, "IDAT", (uint32_t)zlen);
    pos += sim_png_chunk(png + pos, "IEND", 0);

    *out = png;
    *out_len = pos;
    png = NULL;
    ret = 0;
out:
    free(raw);
    free(png);
    return ret;
}

/* ------------------------------------------------------------ libvips */

int sim_image_init(const char *argv0)
{
    if (VIPS_INIT(argv0) != 0) {
        fprintf(stderr, "kie-sim: libvips did not start: %s\n", vips_error_buffer());
        return -1;
    }
    /* results are made once per task: caching operations only holds memory */
    vips_cache_set_max(0);
    vips_cache_set_max_mem(0);
    vips_cache_set_max_files(0);
    vips_concurrency_set(1); /* the worker threads already run in parallel */
    return 0;
}

void sim_image_thread_done(void)
{
    vips_thread_shutdown();
}

void sim_image_shutdown(void)
{
    vips_shutdown();
}

/* ---------------------------------------------------------- result size */

bool sim_aspect_ratio(const char *aspect, uint32_t *rw, uint32_t *rh)
{
    static const struct { const char *name; uint32_t w, h; } ratios[] = {
        {"1:1", 1, 1}, {"4:3", 4, 3}, {"3:4", 3, 4}, {"16:9", 16, 9}, {"9:16", 9, 16}, {"3:2", 3, 2}, {"2:3", 2, 3},
    };

    for (size_t i = 0; i < sizeof ratios / sizeof ratios[0]; i++)
        if (strcmp(aspect, ratios[i].name) == 0) {
            *rw = ratios[i].w;
            *rh = ratios[i].h;
            return true;
        }
    return false;
}

void sim_result_size(const char *aspect, const char *resolution, uint32_t in_w, uint32_t in_h,
                     uint32_t *w, uint32_t *h)
{
    double area = strcmp(resolution, "2K") == 0 ? SIM_AREA_2K : SIM_AREA_1K;
    double r = in_w && in_h ? (double)in_w / (double)in_h : 1.0;
    double fw, fh;
    uint32_t rw, rh;

    if (sim_aspect_ratio(aspect, &rw, &rh))
        r = (double)rw / (double)rh;
    if (r < 0.25)
        r = 0.25;
    if (r > 4.0)
        r = 4.0;
    fw = round(sqrt(area * r));
    fh = round(fw / r);
    if (fw > SIM_RESULT_MAX_DIM)
        fw = SIM_RESULT_MAX_DIM;
    if (fh > SIM_RESULT_MAX_DIM)
        fh = SIM_RESULT_MAX_DIM;
    *w = (uint32_t)fw;
    *h = (uint32_t)fh;
}

/* ------------------------------------------------------------- drawing */

/* 5x7 glyphs of the mark, one byte per row, bit 4 = leftmost column. */
static const struct { char c; unsigned char rows[7]; } sim_glyphs[] = {
    {'S', {0x0E, 0x11, 0x10, 0x0E, 0x01, 0x11, 0x0E}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}},
    {'D', {0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E}},
};
static const char sim_mark[] = "SIMULATED";

/* Blend colour c (0..255 per channel) with weight a/255 into pixel p. */
static void sim_blend(unsigned char *p, const unsigned char c[3], unsigned a)
{
    for (int i = 0; i < 3; i++)
        p[i] = (unsigned char)((c[i] * a + p[i] * (255u - a) + 127u) / 255u);
}

static void sim_fill_rect(unsigned char *rgb, uint32_t w, uint32_t h, uint32_t x0, uint32_t y0, uint32_t rw,
                          uint32_t rh, const unsigned char c[3], unsigned a)
{
    for (uint32_t y = y0; y < y0 + rh && y < h; y++)
        for (uint32_t x = x0; x < x0 + rw && x < w; x++)
            sim_blend(rgb + ((size_t)y * w + x) * 3, c, a);
}

/* "SIMULATED" in the bottom-right corner, on a light plate, scaled to the
 * image (a dot is about 1/320 of the shorter side). */
static void sim_draw_mark(unsigned char *rgb, uint32_t w, uint32_t h)
{
    static const unsigned char plate[3] = {250, 250, 248}, ink[3] = {96, 96, 96};
    uint32_t s = (w < h ? w : h) / 320u, n = (uint32_t)(sizeof sim_mark - 1);
    uint32_t tw, th, pad, x0, y0;

    if (s < 1)
        s = 1;
    tw = (n * 6u - 1u) * s;
    th = 7u * s;
    pad = 2u * s;
    if (tw + 4u * pad > w || th + 4u * pad > h)
        return;
    x0 = w - tw - 2u * pad;
    y0 = h - th - 2u * pad;
    sim_fill_rect(rgb, w, h, x0 - pad, y0 - pad, tw + 2u * pad, th + 2u * pad, plate, 200u);
    for (uint32_t i = 0; i < n; i++) {
        const unsigned char *rows = NULL;

        for (size_t g = 0; g < sizeof sim_glyphs / sizeof sim_glyphs[0]; g++)
            if (sim_glyphs[g].c == sim_mark[i])
                rows = sim_glyphs[g].rows;
        for (uint32_t ry = 0; rows && ry < 7u; ry++)
            for (uint32_t rx = 0; rx < 5u; rx++)
                if (rows[ry] & (0x10u >> rx))
                    sim_fill_rect(rgb, w, h, x0 + (i * 6u + rx) * s, y0 + ry * s, s, s, ink, 255u);
    }
}

/* The studio: a vertical gradient from near-white to light grey. */
static void sim_draw_background(unsigned char *rgb, uint32_t w, uint32_t h)
{
    for (uint32_t y = 0; y < h; y++) {
        unsigned v = 248u - (unsigned)((uint64_t)y * 20u / (h > 1 ? h - 1 : 1));
        unsigned char *row = rgb + (size_t)y * w * 3;

        for (uint32_t x = 0; x < w; x++) {
            row[x * 3] = (unsigned char)v;
            row[x * 3 + 1] = (unsigned char)v;
            row[x * 3 + 2] = (unsigned char)(v - 3u);
        }
    }
}

/* Composite the 3- or 4-band 8-bit product (pw x ph) centred on rgb. */
static void sim_draw_product(unsigned char *rgb, uint32_t w, uint32_t h, const unsigned char *px, uint32_t pw,
                             uint32_t ph, int bands)
{
    uint32_t ox = (w - pw) / 2, oy = (h - ph) / 2;

    for (uint32_t y = 0; y < ph; y++)
        for (uint32_t x = 0; x < pw; x++) {
            const unsigned char *src = px + ((size_t)y * pw + x) * (size_t)bands;

            sim_blend(rgb + ((size_t)(oy + y) * w + ox + x) * 3, src, bands == 4 ? src[3] : 255u);
        }
}

/* ------------------------------------------------------------ the result */

static void sim_vips_err(char *err, size_t errlen, const char *what)
{
    char *e = vips_error_buffer_copy();
    size_t n = e ? strcspn(e, "\n") : 0;

    snprintf(err, errlen, "%s: %.*s", what, (int)(n > 200 ? 200 : n), e && n ? e : "libvips error");
    g_free(e);
}

/* Decode buf with the loader of its sniffed type, orientation applied. */
static VipsImage *sim_decode(const unsigned char *in, size_t len, char *err, size_t errlen)
{
    VipsImage *img = NULL, *rot = NULL;
    void *buf = (void *)(uintptr_t)in; /* the loaders take void * but only read */
    int rc = -1;

    switch (sim_image_sniff(in, len, NULL, NULL)) {
    case SIM_IMAGE_JPEG:
        rc = vips_jpegload_buffer(buf, len, &img, "fail_on", VIPS_FAIL_ON_ERROR, NULL);
        break;
    case SIM_IMAGE_PNG:
        rc = vips_pngload_buffer(buf, len, &img, "fail_on", VIPS_FAIL_ON_ERROR, NULL);
        break;
    case SIM_IMAGE_WEBP:
        rc = vips_webpload_buffer(buf, len, &img, "fail_on", VIPS_FAIL_ON_ERROR, NULL);
        break;
    case SIM_IMAGE_NONE:
        snprintf(err, errlen, "not a JPEG, PNG or WEBP image");
        return NULL;
    }
    if (rc != 0) {
        sim_vips_err(err, errlen, "not a decodable image");
        return NULL;
    }
    if ((uint64_t)img->Xsize * (uint64_t)img->Ysize > SIM_DECODE_MAX_PIXELS) {
        snprintf(err, errlen, "%dx%d pixels is more than the simulator decodes", img->Xsize, img->Ysize);
        g_object_unref(img);
        return NULL;
    }
    if (vips_autorot(img, &rot, NULL) != 0) {
        sim_vips_err(err, errlen, "not a decodable image");
        rot = NULL;
    }
    g_object_unref(img);
    return rot;
}

/* in scaled to fit box_w x box_h whole, as sRGB 8-bit with 3 or 4 bands. */
static VipsImage *sim_fit(VipsImage *in, uint32_t box_w, uint32_t box_h, char *err, size_t errlen)
{
    VipsImage *t[4] = {NULL, NULL, NULL, NULL}, *out = NULL;

    if (vips_thumbnail_image(in, &t[0], (int)box_w, "height", (int)box_h, "size", VIPS_SIZE_BOTH,
                             "no_rotate", TRUE, NULL) != 0 ||
        vips_colourspace(t[0], &t[1], VIPS_INTERPRETATION_sRGB, NULL) != 0 ||
        vips_cast_uchar(t[1], &t[2], NULL) != 0) {
        sim_vips_err(err, errlen, "could not be scaled");
        goto out;
    }
    if (t[2]->Bands == 3 || t[2]->Bands == 4) {
        out = t[2];
        t[2] = NULL;
    } else if (vips_extract_band(t[2], &t[3], 0, "n", vips_image_hasalpha(t[2]) ? 4 : 3, NULL) == 0) {
        out = t[3];
        t[3] = NULL;
    } else {
        sim_vips_err(err, errlen, "has an unusual band layout");
    }
out:
    for (size_t i = 0; i < 4; i++)
        if (t[i])
            g_object_unref(t[i]);
    return out;
}

int sim_result_render(const unsigned char *in, size_t len, const char *aspect, const char *resolution,
                      unsigned char **out, size_t *out_len, uint32_t *w, uint32_t *h, char *err, size_t errlen)
{
    VipsImage *src = NULL, *fit = NULL, *canvas_img = NULL;
    unsigned char *canvas = NULL, *px = NULL;
    void *png = NULL;
    size_t px_len = 0, png_len = 0, canvas_len;
    uint32_t cw, ch;
    int ret = -1;

    *out = NULL;
    *out_len = 0;
    src = sim_decode(in, len, err, errlen);
    if (!src)
        goto out;
    sim_result_size(aspect, resolution, (uint32_t)src->Xsize, (uint32_t)src->Ysize, &cw, &ch);
    fit = sim_fit(src, cw * SIM_BOX_PERMILLE / 1000u, ch * SIM_BOX_PERMILLE / 1000u, err, errlen);
    if (!fit)
        goto out;
    px = vips_image_write_to_memory(fit, &px_len);
    if (!px || (uint32_t)fit->Xsize > cw || (uint32_t)fit->Ysize > ch ||
        px_len != (size_t)fit->Xsize * (size_t)fit->Ysize * (size_t)fit->Bands) {
        sim_vips_err(err, errlen, "could not be scaled");
        goto out;
    }
    canvas_len = (size_t)cw * ch * 3;
    canvas = malloc(canvas_len);
    if (!canvas) {
        snprintf(err, errlen, "out of memory for a %ux%u result", cw, ch);
        goto out;
    }
    sim_draw_background(canvas, cw, ch);
    sim_draw_product(canvas, cw, ch, px, (uint32_t)fit->Xsize, (uint32_t)fit->Ysize, fit->Bands);
    sim_draw_mark(canvas, cw, ch);
    canvas_img = vips_image_new_from_memory(canvas, canvas_len, (int)cw, (int)ch, 3, VIPS_FORMAT_UCHAR);
    if (!canvas_img || vips_pngsave_buffer(canvas_img, &png, &png_len, "compression", SIM_PNG_LEVEL, NULL) != 0) {
        sim_vips_err(err, errlen, "could not be encoded as PNG");
        goto out;
    }
    *out = malloc(png_len);
    if (!*out) {
        snprintf(err, errlen, "out of memory for a %zu-byte PNG", png_len);
        goto out;
    }
    memcpy(*out, png, png_len);
    *out_len = png_len;
    *w = cw;
    *h = ch;
    ret = 0;
out:
    if (canvas_img)
        g_object_unref(canvas_img);
    if (fit)
        g_object_unref(fit);
    if (src)
        g_object_unref(src);
    g_free(png);
    g_free(px);
    free(canvas);
    return ret;
}
