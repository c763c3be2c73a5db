/* cli_photos.h - which files a `generate PHOTO... | DIR...` run takes: the
 * photos named, and the supported images in the directories named (one
 * level, or every level with recursive), in a stable order (sorted by path),
 * each once. Hidden files and directories, our own output directory and its
 * manifest are skipped. */
#ifndef PPA_CLI_PHOTOS_H
#define PPA_CLI_PHOTOS_H

#include <stddef.h>

#define CLI_STEM_MAX 200 /* the output base name (from the photo's stem) */

struct cli_photo {
    char *path;                 /* as found (the argument, or dir/name); owned */
    char *real;                 /* its realpath, for de-duplication; owned */
    char stem[CLI_STEM_MAX];    /* file name without directory and extension, made safe */
};

struct cli_photo_list {
    struct cli_photo *v; /* owned */
    size_t n, cap;
};

/* 1 when `name` has a photo's extension (jpg jpeg png webp heic heif avif tif
 * tiff, any case). */
int cli_photo_ext_ok(const char *name);
/* 1 when the file's first bytes are an image type the server takes. */
int cli_photo_sniff_ok(const char *path);

/* Collect from paths[0..n). skip_dir (may be NULL) is never entered. A named
 * file is taken as it is (the server judges it); a file found in a directory
 * only when its extension or content says it is a photo. 0, or -1 with the
 * reason in err (a missing path, nothing found, out of memory). */
int cli_photos_collect(char *const *paths, int n, int recursive, const char *skip_dir, struct cli_photo_list *out,
                       char *err, size_t cap);
void cli_photos_free(struct cli_photo_list *l);

#endif
