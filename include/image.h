/* image.h - the image pipeline (libvips). Every upload goes through it:
 * decoded with the one loader for its detected type (every other libvips
 * loader is blocked), turned upright by its EXIF orientation, converted to
 * 8-bit sRGB, stripped of metadata, shrunk so its longest side is at most
 * max_side (shrink-on-load: a 48 MP JPEG is never decoded at full size) and
 * re-encoded as JPEG, or PNG when it has real transparency, always within
 * max_output bytes (KIE's 10 MB input limit).
 *
 * image_normalize is CPU work on files: call it from the image worker pool
 * (imagepool.h), never on a thread that answers HTTP requests. */
#ifndef PPA_IMAGE_H
#define PPA_IMAGE_H

#include "validate.h"

#include <stddef.h>

/* KIE's limit on one input image. */
#define IMAGE_KIE_MAX_BYTES (10LL * 1000 * 1000)

struct image_limits {
    long max_side;        /* longest side after shrinking, pixels; 0 = never shrink */
    long long max_pixels; /* width x height from the header; more is refused before decoding */
    long long max_output; /* the encoded image never exceeds this many bytes */
    int keep_metadata;    /* 1: keep camera EXIF (make, model, exposure, date); never GPS, serials, owner */
};

struct image_meta {
    enum image_type type;
    long width;  /* upright: after the EXIF orientation is applied */
    long height;
    long long size;
};

struct image_result {
    struct image_meta original; /* as uploaded */
    struct image_meta stored;   /* as written to out_fd */
    int orientation;            /* the upload's EXIF orientation (1-8), applied */
    /* on failure: the answer to give */
    unsigned status;            /* 0 on success */
    char code[48];
    char message[300];
};

/* libvips is started once per process: `threads` is libvips' own worker
 * count per pipeline, its operation cache is turned off, and every loader but
 * JPEG, PNG, WEBP, HEIF and TIFF is blocked (as are all loaders libvips marks
 * untrusted).
 *
 * The server starts it lazily: image_lib_configure at start-up (cheap), then
 * the first image_normalize starts it (image_lib_ready; about 30 ms of
 * module loading that a server which is only asked for /status never pays).
 * image_lib_init does both at once (tests, fuzzers). 0, or ERR_* with a
 * message in err. */
void image_lib_configure(int threads);
int image_lib_ready(char *err, size_t cap);
int image_lib_init(const char *argv0, int threads, char *err, size_t cap);
/* Release libvips' per-thread state; call on each thread that used it before
 * it exits. */
void image_lib_thread_done(void);
void image_lib_shutdown(void);

/* Normalise the image at in_path (of the already detected `type`, `in_size`
 * bytes) into out_fd (empty, positioned at 0). Returns 0 and fills
 * res->original and res->stored, or ERR_* with res->status/code/message set
 * (415/422 unreadable, 413 too many pixels, 500); out_fd may then hold
 * partial bytes: the caller discards it. */
int image_normalize(const char *in_path, enum image_type type, long long in_size, const struct image_limits *lim,
                    int out_fd, struct image_result *res);

#endif
