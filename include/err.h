/* err.h - the one error convention: 0 is success, a negative enum err otherwise. */
#ifndef PPA_ERR_H
#define PPA_ERR_H

enum err {
    ERR_OK = 0,
    ERR_NOMEM = -1,
    ERR_TOO_LARGE = -2,
    ERR_INVALID = -3,
    ERR_IO = -4,
    ERR_UPSTREAM = -5,
    ERR_NOT_FOUND = -6,
    ERR_TIMEOUT = -7,
    ERR_UNSUPPORTED = -8,
};

/* A static name for an error code ("ERR_IO"...). */
const char *err_str(int err);

#endif
