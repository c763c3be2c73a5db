/* validate.h - pure checks on hostile input: image magic bytes, stored file
 * names, URLs KIE must fetch, and the KIE generate fields. No I/O. */
#ifndef PPA_VALIDATE_H
#define PPA_VALIDATE_H

#include <stddef.h>

/* Image types. JPEG, PNG and WEBP are what we store, serve and send KIE
 * (KIE accepts those three); HEIF, AVIF and TIFF are accepted as uploads only
 * and always re-encoded by the image pipeline (image.h). */
enum image_type {
    IMAGE_UNKNOWN = 0,
    IMAGE_JPEG,
    IMAGE_PNG,
    IMAGE_WEBP,
    IMAGE_HEIF, /* HEIC/HEIF (iPhone photos) */
    IMAGE_AVIF,
    IMAGE_TIFF,
};
#define IMAGE_TYPE_LAST IMAGE_TIFF

/* Bytes needed by image_detect (and image_refusal) to decide. */
#define IMAGE_MAGIC_LEN 12

/* Detect an accepted upload type from the first bytes of a file (len may be
 * short): JPEG, PNG, WEBP, HEIC/HEIF, AVIF (ISO-BMFF "ftyp" brands) and
 * TIFF. Camera RAW files built on TIFF headers (CR2, ORF, RW2) are not TIFF. */
enum image_type image_detect(const unsigned char *p, size_t len);
/* For a file that image_detect refuses: when its first bytes are a format we
 * know (RAW, GIF, BMP, PDF, SVG, FITS, PSD, JPEG XL, video...), a sentence
 * naming it and what to do instead; NULL otherwise. */
const char *image_refusal(const unsigned char *p, size_t len);
/* A TIFF that is really a camera RAW file: its first IFD (within the len
 * bytes given, the start of the file) carries DNGVersion (DNG), or is marked
 * a reduced-resolution preview (NEF, ARW and most TIFF-based RAWs put a small
 * preview first). 1 or 0; malformed or short headers are 0 (the decoder
 * decides). */
int tiff_is_raw(const unsigned char *p, size_t len);
/* The sentence image_refusal gives for a RAW file. */
extern const char IMAGE_RAW_REFUSAL[];

/* 1 for the types we store, serve and send to KIE (JPEG, PNG, WEBP). */
int image_is_output(enum image_type t);
const char *image_mime(enum image_type t); /* "image/png"... or NULL */
const char *image_ext(enum image_type t);  /* "png"... or NULL */
/* Map a MIME type (exactly image/jpeg, image/png, image/webp, image/heic,
 * image/avif, image/tiff; image/heif and image/jpg too) to a type. */
enum image_type image_from_mime(const char *mime);

/* The stored type named by an extension: exactly "jpg", "png" or "webp";
 * else IMAGE_UNKNOWN. */
enum image_type image_from_ext(const char *ext);

/* A stored name is exactly "<lowercase uuid>.<jpg|png|webp>": the only names
 * the server produces. Returns the type, or IMAGE_UNKNOWN for anything else
 * (traversal, encodings, other extensions...). */
enum image_type stored_name_check(const char *name);

/* Parsed absolute URL; fields point into `storage`. */
struct url_parts {
    char scheme[8]; /* "http" or "https" */
    char host[256]; /* lowercase, without brackets for IPv6 */
    unsigned port;  /* 0 when absent */
    const char *path_and_query; /* points into the original string ("" allowed) */
};

/* Parse an absolute http(s) URL. 0 or ERR_INVALID (bad scheme, no host,
 * userinfo, spaces or control characters, bad port, > 2048 bytes). */
int url_parse(const char *url, struct url_parts *out);

/* 1 when KIE could not reach the host from the internet: localhost names,
 * loopback, private, link-local, unspecified, CGNAT, ULA addresses, and
 * single-label names such as "api". Literal checks only, no DNS. */
int url_host_is_private(const char *host);

/* Count UTF-8 characters; -1 when the text is not valid UTF-8. */
long utf8_length(const char *s);

/* KIE's allowed values for flux-2/pro-image-to-image. */
int aspect_ratio_valid(const char *s);
int resolution_valid(const char *s);
extern const char *const ASPECT_RATIOS[];
extern const char *const RESOLUTIONS[];
#define N_ASPECT_RATIOS 8
#define N_RESOLUTIONS 2
#define PROMPT_MIN_CHARS 3
#define PROMPT_MAX_CHARS 5000
#define MAX_INPUT_URLS 8

/* A photo's original file name as a client gives it (POST /generate
 * photo_name): 1..PHOTO_NAME_MAX bytes of valid UTF-8, no control
 * characters (C0, DEL), no '/' or '\\'. */
#define PHOTO_NAME_MAX 255
int photo_name_valid(const char *s);

/* Parse a Range header against a file of `size` bytes. Only one range of
 * "bytes=A-B", "bytes=A-" or "bytes=-N" is honoured. Returns 0 with the slice
 * in *start and *len, 1 when unsatisfiable (answer 416), -1 to ignore the header
 * (malformed or several ranges: answer the whole file). */
int range_parse(const char *header, long long size, long long *start, long long *len);

/* A KIE task id we are willing to put in a URL or a cache key:
 * 1-128 characters of [A-Za-z0-9_.-]. */
int task_id_valid(const char *s);

/* A kept result's name is "<task id>.<jpg|png|webp>" (task_id_valid id).
 * Returns the type, or IMAGE_UNKNOWN for anything else. */
enum image_type result_name_check(const char *name);

#endif
