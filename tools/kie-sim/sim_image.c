/*
 * sim_image.c - PNG encoder and image sniffing for kie-sim (see sim_image.h).
 *
 * PNG layout written here: 8-byte signature, IHDR (8-bit RGB, no interlace),
 * one IDAT holding the zlib stream of rows (each prefixed by filter byte 0),
 * IEND. Every chunk is length | type | data | CRC-32(type + data).
 */
#include "sim_image.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

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
