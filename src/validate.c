/* validate.c - see validate.h. */
#include "validate.h"
#include "err.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

const char *const ASPECT_RATIOS[] = {"1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "auto"};
const char *const RESOLUTIONS[] = {"1K", "2K"};

/* ISO-BMFF (HEIF, AVIF, MP4...): "....ftyp<brand>". */
static int ftyp_brand(const unsigned char *p, size_t len, char brand[5])
{
    if (len < 12 || memcmp(p + 4, "ftyp", 4) != 0)
        return 0;
    memcpy(brand, p + 8, 4);
    brand[4] = '\0';
    return 1;
}

enum image_type image_detect(const unsigned char *p, size_t len)
{
    static const unsigned char png[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    static const char *const heif_brands[] = {"heic", "heix", "hevc", "hevx", "heim", "heis",
                                              "hevm", "hevs", "mif1", "msf1"};
    char brand[5];

    if (len >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
        return IMAGE_JPEG;
    if (len >= 8 && memcmp(p, png, 8) == 0)
        return IMAGE_PNG;
    if (len >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
        return IMAGE_WEBP;
    if (ftyp_brand(p, len, brand)) {
        if (strcmp(brand, "avif") == 0 || strcmp(brand, "avis") == 0)
            return IMAGE_AVIF;
        for (size_t i = 0; i < sizeof heif_brands / sizeof heif_brands[0]; i++)
            if (strcmp(brand, heif_brands[i]) == 0)
                return IMAGE_HEIF;
        return IMAGE_UNKNOWN;
    }
    /* TIFF, but not the RAW formats that reuse its header: Canon CR2 has
     * "CR" at offset 8; Olympus ORF and Panasonic RW2 change the magic */
    if (len >= 10 && ((memcmp(p, "II*\0", 4) == 0 && memcmp(p + 8, "CR", 2) != 0) || memcmp(p, "MM\0*", 4) == 0))
        return IMAGE_TIFF;
    return IMAGE_UNKNOWN;
}

static int starts(const unsigned char *p, size_t len, const char *magic)
{
    size_t n = strlen(magic);
    return len >= n && memcmp(p, magic, n) == 0;
}

const char IMAGE_RAW_REFUSAL[] = "This is a camera RAW file, which cannot be used directly: export it as JPEG "
                                 "from your camera app or photo editor and upload that.";

static unsigned tiff_u16(const unsigned char *p, int be)
{
    return be ? (unsigned)(p[0] << 8 | p[1]) : (unsigned)(p[1] << 8 | p[0]);
}

static unsigned long tiff_u32(const unsigned char *p, int be)
{
    return be ? (unsigned long)p[0] << 24 | (unsigned long)p[1] << 16 | (unsigned long)p[2] << 8 | p[3]
              : (unsigned long)p[3] << 24 | (unsigned long)p[2] << 16 | (unsigned long)p[1] << 8 | p[0];
}

int tiff_is_raw(const unsigned char *p, size_t len)
{
    int be;
    unsigned long ifd;
    unsigned n;

    if (len < 8 || (memcmp(p, "II*\0", 4) != 0 && memcmp(p, "MM\0*", 4) != 0))
        return 0;
    be = p[0] == 'M';
    ifd = tiff_u32(p + 4, be);
    if (ifd < 8 || ifd > len - 2)
        return 0;
    n = tiff_u16(p + ifd, be);
    for (unsigned i = 0; i < n && ifd + 2 + 12 * (i + 1) <= len; i++) {
        const unsigned char *e = p + ifd + 2 + 12 * i;
        unsigned tag = tiff_u16(e, be);
        unsigned type = tiff_u16(e + 2, be);
        if (tag == 50706) /* DNGVersion */
            return 1;
        if (tag == 254) { /* NewSubfileType: bit 0 = reduced-resolution image */
            unsigned long v = type == 3 ? tiff_u16(e + 8, be) : tiff_u32(e + 8, be);
            if (v & 1)
                return 1;
        }
    }
    return 0;
}

const char *image_refusal(const unsigned char *p, size_t len)
{
    const char *raw = IMAGE_RAW_REFUSAL;
    char brand[5];
    size_t i = 0;

    if (ftyp_brand(p, len, brand)) {
        if (strcmp(brand, "crx ") == 0)
            return raw;
        if (strncmp(brand, "qt", 2) == 0 || strncmp(brand, "iso", 3) == 0 || strncmp(brand, "mp4", 3) == 0 ||
            strncmp(brand, "M4V", 3) == 0 || strncmp(brand, "3g", 2) == 0)
            return "This is a video, not a photo: upload a still image (JPEG, PNG, WEBP, HEIC, AVIF or TIFF).";
        return NULL;
    }
    if (len >= 10 && memcmp(p, "II*\0", 4) == 0 && memcmp(p + 8, "CR", 2) == 0)
        return raw;
    if (starts(p, len, "IIRO") || starts(p, len, "IIRS") || starts(p, len, "IIU\0") || starts(p, len, "FUJIFILM"))
        return raw;
    if (starts(p, len, "GIF87a") || starts(p, len, "GIF89a"))
        return "GIF images are not accepted: save the photo as JPEG or PNG and upload that.";
    if (starts(p, len, "BM"))
        return "BMP images are not accepted: save the photo as JPEG or PNG and upload that.";
    if (starts(p, len, "8BPS"))
        return "Photoshop (PSD) files are not accepted: export the image as JPEG or PNG and upload that.";
    if (starts(p, len, "%PDF-"))
        return "This is a PDF document, not a photo: export the page or picture as JPEG or PNG and upload that.";
    if (starts(p, len, "SIMPLE  ="))
        return "FITS files are not accepted: convert the image to JPEG or PNG and upload that.";
    if ((len >= 2 && p[0] == 0xff && p[1] == 0x0a) || (len >= 12 && memcmp(p, "\0\0\0\x0cJXL \r\n\x87\n", 12) == 0))
        return "JPEG XL images are not accepted yet: save the photo as JPEG or PNG and upload that.";
    if (len >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf)
        i = 3; /* UTF-8 byte order mark */
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    if (i < len && p[i] == '<')
        return "This is a text document (SVG, XML or HTML), not a photo: export the image as JPEG or PNG and "
               "upload that.";
    return NULL;
}

int image_is_output(enum image_type t)
{
    return t == IMAGE_JPEG || t == IMAGE_PNG || t == IMAGE_WEBP;
}

const char *image_mime(enum image_type t)
{
    switch (t) {
    case IMAGE_JPEG: return "image/jpeg";
    case IMAGE_PNG: return "image/png";
    case IMAGE_WEBP: return "image/webp";
    case IMAGE_HEIF: return "image/heic";
    case IMAGE_AVIF: return "image/avif";
    case IMAGE_TIFF: return "image/tiff";
    default: return NULL;
    }
}

const char *image_ext(enum image_type t)
{
    switch (t) {
    case IMAGE_JPEG: return "jpg";
    case IMAGE_PNG: return "png";
    case IMAGE_WEBP: return "webp";
    case IMAGE_HEIF: return "heic";
    case IMAGE_AVIF: return "avif";
    case IMAGE_TIFF: return "tiff";
    default: return NULL;
    }
}

/* The type among [first, last] that name_of (image_mime or image_ext) calls
 * `s`; the inverse of both, so the names of a type live in one place each. */
static enum image_type image_named(const char *s, const char *(*name_of)(enum image_type), int last)
{
    if (s)
        for (int t = IMAGE_JPEG; t <= last; t++)
            if (strcmp(s, name_of((enum image_type)t)) == 0)
                return (enum image_type)t;
    return IMAGE_UNKNOWN;
}

enum image_type image_from_mime(const char *mime)
{
    if (mime && strcmp(mime, "image/heif") == 0)
        return IMAGE_HEIF;
    if (mime && strcmp(mime, "image/jpg") == 0)
        return IMAGE_JPEG;
    return image_named(mime, image_mime, IMAGE_TYPE_LAST);
}

enum image_type image_from_ext(const char *ext)
{
    return image_named(ext, image_ext, IMAGE_WEBP);
}

enum image_type stored_name_check(const char *name)
{
    static const int dash_at[] = {8, 13, 18, 23};
    size_t d = 0;

    if (!name || strnlen(name, 48) < 36 + 4)
        return IMAGE_UNKNOWN;
    for (size_t i = 0; i < 36; i++) {
        char c = name[i];
        if (d < 4 && (int)i == dash_at[d]) {
            if (c != '-')
                return IMAGE_UNKNOWN;
            d++;
            continue;
        }
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return IMAGE_UNKNOWN;
    }
    if (name[36] != '.')
        return IMAGE_UNKNOWN;
    return image_from_ext(name + 37);
}

int url_parse(const char *url, struct url_parts *out)
{
    const char *p;
    const char *host_end;
    const char *auth_end;
    size_t hl;

    memset(out, 0, sizeof *out);
    if (!url || strnlen(url, 2049) > 2048)
        return ERR_INVALID;
    for (p = url; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '\\')
            return ERR_INVALID;
    if (strncasecmp(url, "http://", 7) == 0) {
        memcpy(out->scheme, "http", 5);
        p = url + 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        memcpy(out->scheme, "https", 6);
        p = url + 8;
    } else {
        return ERR_INVALID;
    }
    auth_end = p + strcspn(p, "/?#");
    if (memchr(p, '@', (size_t)(auth_end - p)))
        return ERR_INVALID; /* no userinfo: it only serves to disguise hosts */
    if (*p == '[') {
        host_end = memchr(p, ']', (size_t)(auth_end - p));
        if (!host_end)
            return ERR_INVALID;
        hl = (size_t)(host_end - p - 1);
        if (hl == 0 || hl >= sizeof out->host)
            return ERR_INVALID;
        memcpy(out->host, p + 1, hl);
        p = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/?#");
        hl = (size_t)(host_end - p);
        if (hl == 0 || hl >= sizeof out->host)
            return ERR_INVALID;
        memcpy(out->host, p, hl);
        p = host_end;
    }
    out->host[hl] = '\0';
    for (size_t i = 0; i < hl; i++) {
        char c = out->host[i];
        out->host[i] = (char)tolower((unsigned char)c);
        /* no '%': an escaped host ("127.0.0.%31") must not slip past the private check */
        if (!(isalnum((unsigned char)c) || c == '-' || c == '.' || c == ':' || c == '_'))
            return ERR_INVALID;
    }
    if (*p == ':') {
        unsigned long port = 0;
        p++;
        if (!isdigit((unsigned char)*p))
            return ERR_INVALID;
        while (isdigit((unsigned char)*p)) {
            port = port * 10 + (unsigned long)(*p - '0');
            if (port > 65535)
                return ERR_INVALID;
            p++;
        }
        if (port == 0)
            return ERR_INVALID;
        out->port = (unsigned)port;
    }
    if (*p && *p != '/' && *p != '?' && *p != '#')
        return ERR_INVALID;
    out->path_and_query = p;
    return 0;
}

static int ipv4_private(uint32_t a)
{
    uint8_t b0 = (uint8_t)(a >> 24);
    uint8_t b1 = (uint8_t)(a >> 16);

    return b0 == 0 || b0 == 10 || b0 == 127 || (b0 == 169 && b1 == 254) ||
           (b0 == 172 && (b1 & 0xf0) == 16) || (b0 == 192 && b1 == 168) ||
           (b0 == 100 && (b1 & 0xc0) == 64) || b0 >= 224;
}

/* Legacy IPv4 forms that inet_pton refuses but resolvers accept ("127.1",
 * "2130706433", "0x7f.0.0.1"): anything all digits/dots/x is treated as an
 * address we cannot vouch for. */
static int looks_numeric(const char *h)
{
    int any_digit = 0;
    for (; *h; h++) {
        if (isdigit((unsigned char)*h))
            any_digit = 1;
        else if (*h != '.' && *h != 'x' && *h != 'X' && !isxdigit((unsigned char)*h))
            return 0;
    }
    return any_digit;
}

int url_host_is_private(const char *host)
{
    struct in_addr v4;
    struct in6_addr v6;
    size_t hl = strlen(host);

    while (hl > 0 && host[hl - 1] == '.')
        hl--; /* "localhost." */
    if (hl == 0)
        return 1;
    if (inet_pton(AF_INET, host, &v4) == 1)
        return ipv4_private(ntohl(v4.s_addr));
    if (inet_pton(AF_INET6, host, &v6) == 1) {
        const uint8_t *b = v6.s6_addr;
        static const uint8_t zero[16];
        if (IN6_IS_ADDR_V4MAPPED(&v6))
            return ipv4_private(((uint32_t)b[12] << 24) | ((uint32_t)b[13] << 16) |
                                ((uint32_t)b[14] << 8) | b[15]);
        if (memcmp(b, zero, 15) == 0 && (b[15] == 0 || b[15] == 1))
            return 1; /* :: and ::1 */
        if ((b[0] & 0xfe) == 0xfc || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) || b[0] == 0xff)
            return 1; /* ULA, link-local, multicast */
        return 0;
    }
    if (strchr(host, ':'))
        return 1; /* unparseable IPv6-ish */
    if (!memchr(host, '.', hl))
        return 1; /* single label: "localhost", "api", "minio" */
    if (looks_numeric(host))
        return 1;
    if ((hl >= 10 && strncasecmp(host + hl - 10, ".localhost", 10) == 0) ||
        (hl >= 6 && strncasecmp(host + hl - 6, ".local", 6) == 0) ||
        (hl >= 9 && strncasecmp(host + hl - 9, ".internal", 9) == 0))
        return 1;
    return 0;
}

int photo_name_valid(const char *s)
{
    size_t n = strlen(s);

    if (n < 1 || n > PHOTO_NAME_MAX || utf8_length(s) < 0)
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == '/' || *p == '\\')
            return 0;
    return 1;
}

long utf8_length(const char *s)
{
    long n = 0;
    const unsigned char *p = (const unsigned char *)s;

    while (*p) {
        int extra;
        if (*p < 0x80)
            extra = 0;
        else if ((*p & 0xe0) == 0xc0 && *p >= 0xc2)
            extra = 1;
        else if ((*p & 0xf0) == 0xe0)
            extra = 2;
        else if ((*p & 0xf8) == 0xf0 && *p <= 0xf4)
            extra = 3;
        else
            return -1;
        /* RFC 3629: no overlong 3/4-byte forms, no surrogates, nothing above U+10FFFF
         * (p[1] is at worst the terminating NUL) */
        if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f) || (p[0] == 0xf0 && p[1] < 0x90) ||
            (p[0] == 0xf4 && p[1] > 0x8f))
            return -1;
        p++;
        for (int i = 0; i < extra; i++, p++)
            if ((*p & 0xc0) != 0x80)
                return -1;
        n++;
    }
    return n;
}

static int one_of(const char *s, const char *const *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, set[i]) == 0)
            return 1;
    return 0;
}

int aspect_ratio_valid(const char *s)
{
    return s && one_of(s, ASPECT_RATIOS, N_ASPECT_RATIOS);
}

int resolution_valid(const char *s)
{
    return s && one_of(s, RESOLUTIONS, N_RESOLUTIONS);
}

int task_id_valid(const char *s)
{
    size_t n = 0;
    if (!s)
        return 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= 128 || !(isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return n > 0;
}

/* Read a decimal number of at most 18 digits; advances *p. -1 when none. */
static long long read_num(const char **p)
{
    long long v = 0;
    int digits = 0;
    while (isdigit((unsigned char)**p)) {
        if (++digits > 18)
            return -1;
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    return digits ? v : -1;
}

int range_parse(const char *header, long long size, long long *start, long long *len)
{
    const char *p = header;
    long long a;
    long long b;

    if (!p || strncmp(p, "bytes=", 6) != 0 || size < 0)
        return -1;
    p += 6;
    if (*p == '-') { /* suffix: the last N bytes */
        p++;
        b = read_num(&p);
        if (b < 0 || *p)
            return -1;
        if (b == 0 || size == 0)
            return 1;
        *start = b >= size ? 0 : size - b;
        *len = size - *start;
        return 0;
    }
    a = read_num(&p);
    if (a < 0 || *p != '-')
        return -1;
    p++;
    if (*p == '\0') {
        b = size - 1;
    } else {
        b = read_num(&p);
        if (b < 0 || *p || b < a)
            return -1;
        if (b >= size)
            b = size - 1;
    }
    if (a >= size)
        return 1;
    *start = a;
    *len = b - a + 1;
    return 0;
}

enum image_type result_name_check(const char *name)
{
    const char *dot = name ? strrchr(name, '.') : NULL;
    char id[129];
    size_t n;

    if (!dot)
        return IMAGE_UNKNOWN;
    n = (size_t)(dot - name);
    if (n == 0 || n >= sizeof id)
        return IMAGE_UNKNOWN;
    memcpy(id, name, n);
    id[n] = '\0';
    return task_id_valid(id) ? image_from_ext(dot + 1) : IMAGE_UNKNOWN;
}
