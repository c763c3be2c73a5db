/*
 * sim_image.h - images for kie-sim: JPEG/PNG/WEBP sniffing for downloaded
 * inputs, the simulated result (the first input fitted on a light studio
 * background, marked "SIMULATED", via libvips) and a tiny gradient PNG
 * encoder (zlib) for the result_style=gradient knob.
 * libvips is started once by sim_image_init(); everything else is safe to
 * call from any thread and keeps no state of its own.
 */
#ifndef SIM_IMAGE_H
#define SIM_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIM_PNG_MAX_DIM 4096u
#define SIM_RESULT_MAX_DIM 4096u
#define SIM_DECODE_MAX_PIXELS (100u * 1000u * 1000u) /* larger inputs are refused */

enum sim_image_type {
    SIM_IMAGE_NONE = 0,
    SIM_IMAGE_JPEG,
    SIM_IMAGE_PNG,
    SIM_IMAGE_WEBP
};

/* Identify an image by its magic bytes. If width/height are non-NULL they get
 * the pixel size when the header lies inside data[0..len), else 0. Never reads
 * past len. Returns SIM_IMAGE_NONE for anything that is not JPEG/PNG/WEBP. */
enum sim_image_type sim_image_sniff(const unsigned char *data, size_t len,
                                    uint32_t *width, uint32_t *height);

/* Encode a deterministic RGB gradient with a checkerboard tint chosen by seed,
 * width x height pixels (each 1..SIM_PNG_MAX_DIM), as a complete PNG with
 * valid CRCs. On success returns 0 and *out is a malloc'd buffer of *out_len
 * bytes owned by the caller (free()). On error returns -1 and *out is NULL. */
int sim_png_render(uint32_t width, uint32_t height, uint32_t seed,
                   unsigned char **out, size_t *out_len);

/* Start libvips once, before any thread renders (no operation cache, a small
 * per-operation thread pool). Returns 0, or -1 with a message on stderr. */
int sim_image_init(const char *argv0);

/* Threads that rendered call this before they exit; main calls
 * sim_image_shutdown() after every such thread has ended. */
void sim_image_thread_done(void);
void sim_image_shutdown(void);

/* KIE's fixed aspect ratios ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2",
 * "2:3"): true with the ratio in *rw:*rh, false for anything else ("auto"). */
bool sim_aspect_ratio(const char *aspect, uint32_t *rw, uint32_t *rh);

/* Pixel size of a result: resolution "1K" is about 1 megapixel (1024 x 1024
 * for 1:1), "2K" about 4; aspect is one of KIE's ratios ("16:9", ...), and
 * "auto" takes in_w:in_h (1:1 if unknown). Ratios are clamped to 1:4..4:1. */
void sim_result_size(const char *aspect, const char *resolution, uint32_t in_w, uint32_t in_h,
                     uint32_t *w, uint32_t *h);

/* The simulated result: decode in[0..len) with the loader for its sniffed
 * type (JPEG, PNG or WEBP only; EXIF orientation applied), fit it whole
 * ("contain") in the middle of a light studio background of
 * sim_result_size(aspect, resolution, input size), mark a corner
 * "SIMULATED" and encode it as PNG. On success returns 0, *out is a malloc'd
 * PNG of *out_len bytes owned by the caller and *w, *h its size. On failure
 * (not decodable, too many pixels) returns -1 with the reason in err. */
int sim_result_render(const unsigned char *in, size_t len, const char *aspect, const char *resolution,
                      unsigned char **out, size_t *out_len, uint32_t *w, uint32_t *h, char *err, size_t errlen);

#endif
