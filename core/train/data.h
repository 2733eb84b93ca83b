/* Image-caption datasets for training: a CSV, TSV or '|'-separated file with
 * a header, or JSON Lines, read into pairs of (image, caption) with the
 * images resolved against the data file's folder and listed once each.
 *
 * It does not open the images (features.c does) or tokenize the captions. */
#ifndef PCLIP_TRAIN_DATA_H
#define PCLIP_TRAIN_DATA_H

#include "internal.h"

/* ---- limits ---- */

/* The data file is read whole; captions and paths are copied once more. */
#define PCLIP__DATA_LIMIT_FILE_BYTES ((size_t)4 << 30)
/* One record (a line, or a quoted CSV record over several lines). */
#define PCLIP__DATA_LIMIT_RECORD_BYTES ((size_t)1 << 20)
/* Pairs per file (rows are counted in int64 everywhere, encoders take int32
 * per call: 100 M leaves room). */
#define PCLIP__DATA_LIMIT_PAIRS ((int64_t)100000000)
/* Columns of a separated-values header. */
#define PCLIP__DATA_LIMIT_COLUMNS 4096

/* ---- options ---- */

typedef enum pclip__data_format {
    PCLIP__DATA_AUTO = 0, /* by extension (.csv .tsv .jsonl .ndjson .json), else sniffed */
    PCLIP__DATA_CSV,      /* RFC 4180: quoted fields, "" for a quote, separators and line
                             breaks inside quotes; separator ',' or '|' (or sep) */
    PCLIP__DATA_TSV,      /* plain tab-separated: no quoting, a field holds no tab or newline */
    PCLIP__DATA_JSONL,    /* one JSON object per line; blank lines allowed */
    PCLIP__DATA_FORMAT_COUNT
} pclip__data_format;

/* Zero means the default for every field. */
typedef struct pclip__dataset_options {
    pclip__data_format format;
    /* separator of CSV/TSV: 0 auto, ',', '\t' or '|'. Auto, from the header
     * line: '|' when it holds '|' and neither a tab nor a comma (flickr30k's
     * results.csv); else the extension's ('\t' for .tsv/.tab, ',' for .csv)
     * unless the header holds only the other one; for other names '\t' when
     * the header holds a tab, else ','. With '|', the one space that may
     * follow each '|' belongs to the separator ("a.jpg| 0| A dog ."), and a
     * field is quoted only when its quote follows the '|' directly (as
     * pandas reads it). A tab separator always means plain TSV (no quoting);
     * the format then reads TSV whatever the extension. */
    char sep;
    const char *image_column;   /* NULL: "image" */
    const char *caption_column; /* NULL: "caption" */
    /* NULL: relative image paths are taken relative to the data file's
     * folder; else relative to this folder (flickr30k's results.csv lies
     * beside the folder of its images) */
    const char *image_root;
    /* non-zero: a row with the wrong number of fields, or an empty image or
     * caption, is left out and listed in the dataset's `bad_rows` instead of
     * failing the read (malformed UTF-8, NUL bytes, unterminated quotes and
     * over-long records still fail: they make the rest of the file
     * doubtful) */
    int32_t skip_bad_rows;
} pclip__dataset_options;

/* ---- the dataset ---- */

typedef struct pclip__pair {
    int64_t image;       /* index into the dataset's images */
    const char *path;    /* = images[image]; borrowed from the dataset */
    const char *caption; /* UTF-8, NUL-terminated; borrowed from the dataset */
    int64_t line;        /* 1-based line of the data file where the record starts */
} pclip__pair;

/* A row left out under skip_bad_rows. */
typedef struct pclip__bad_row {
    int64_t line;
    const char *why; /* "2 fields, the header has 3"; borrowed from the dataset */
} pclip__bad_row;

typedef struct pclip__dataset {
    char *path;               /* the data file, as given */
    pclip__data_format format; /* as read (never AUTO) */
    char sep;                 /* CSV/TSV: the separator used; 0 for JSONL */
    int64_t n_pairs;
    pclip__pair *pairs;       /* [n_pairs], in file order */
    int64_t n_images;
    char **images;            /* [n_images]: unique resolved paths, in order of first use */
    int64_t *image_line;      /* [n_images]: the line of each image's first use */
    int64_t n_bad_rows;
    pclip__bad_row *bad_rows; /* [n_bad_rows] (skip_bad_rows only) */
    char *strings;            /* one block holding every caption, path and reason */
} pclip__dataset;

/* Reads the data file `path` into *out (free with pclip__dataset_destroy).
 * Image paths are taken relative to the data file's folder; absolute paths
 * are kept as they are; several rows may name the same image. A leading
 * UTF-8 byte order mark is skipped and CR LF line ends are accepted. Errors
 * (BAD_FORMAT, or BAD_TEXT for invalid UTF-8; LIMIT for a file or record
 * over the limits; NOT_FOUND / IO for the file itself) name the file and the
 * line: an empty file, a header without rows, a missing column (with the
 * columns present), a row with too few or too many fields, an empty image or
 * caption, an unterminated quote, text after a closing quote, a NUL byte, a
 * bare CR, a JSON line that is not an object with the two keys as strings.
 * opts NULL means the defaults. On failure *out is left as it was. */
pclip_status pclip__dataset_read(pclip_ctx_t ctx, const char *path,
                                 const pclip__dataset_options *opts, pclip__dataset **out);
void pclip__dataset_destroy(pclip__dataset *ds);

/* "csv", "tsv", "jsonl" ("auto" for AUTO); "?" out of range. */
const char *pclip__data_format_name(pclip__data_format f);

#endif /* PCLIP_TRAIN_DATA_H */
