/*
 * sim_image.h - tiny image helpers for kie-sim: a PNG encoder (zlib) for the
 * simulated result images and JPEG/PNG/WEBP sniffing for downloaded inputs.
 * Pure functions, no global state, safe to call from any thread.
 */
#ifndef SIM_IMAGE_H
#define SIM_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#define SIM_PNG_MAX_DIM 4096u

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

#endif
