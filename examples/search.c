/* An image index with the portclip library, in one page: index the images
 * of a folder (only new or changed files are embedded when it runs again),
 * then search it with a text.
 *
 *   example_search MODEL_DIR INDEX_DIR IMAGE_FOLDER TEXT
 *
 * Output: "indexed N images", then the 3 best matches, one per line:
 * "SCORE PATH". Built with the project and run by the tests (check_index).
 * Errors go to stderr with exit 1. */
#include <stdio.h>

#include "portclip.h"

static int fail(pclip_ctx_t ctx, const char *what) {
    fprintf(stderr, "example_search: %s: %s\n", what, pclip_ctx_last_error(ctx));
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL_DIR INDEX_DIR IMAGE_FOLDER TEXT\n", argv[0]);
        return 2;
    }
    const char *model_dir = argv[1], *index_dir = argv[2], *folder = argv[3], *text = argv[4];
    pclip_ctx_t ctx;
    if (pclip_ctx_create(&ctx)) return 1;
    pclip_model_t model = NULL;
    pclip_backend_t cpu = NULL;
    pclip_path_list_t images = NULL;
    pclip_index_t index = NULL;
    int rc = 1;
    if (pclip_model_load(ctx, model_dir, &model)) {
        rc = fail(ctx, "model");
        goto done;
    }
    if (pclip_backend_create(ctx, NULL, -1, &cpu)) { /* PORTCLIP_BACKEND, else auto */
        rc = fail(ctx, "backend");
        goto done;
    }
    /* every image under the folder, then the index brought up to date */
    if (pclip_collect_images(ctx, &folder, 1, 0, &images)) {
        rc = fail(ctx, "folder");
        goto done;
    }
    pclip_index_report report;
    if (pclip_index_update(ctx, index_dir, model, cpu, pclip_path_list_paths(images),
                           pclip_path_list_count(images), NULL, &report)) {
        rc = fail(ctx, "index");
        goto done;
    }
    printf("indexed %lld images\n", (long long)report.count);
    /* the text's three nearest images */
    if (pclip_index_open(ctx, index_dir, &index)) {
        rc = fail(ctx, "open");
        goto done;
    }
    pclip_index_hit hits[3];
    int64_t n_hits;
    if (pclip_index_search_text(index, model, cpu, &text, 1, 3, hits, &n_hits)) {
        rc = fail(ctx, "search");
        goto done;
    }
    for (int64_t i = 0; i < n_hits; i++) printf("%.4f %s\n", hits[i].score, hits[i].path);
    rc = 0;
done:
    pclip_index_close(index);
    pclip_path_list_destroy(images);
    pclip_model_destroy(model); /* before the backend it compiled graphs on */
    pclip_backend_destroy(cpu);
    pclip_ctx_destroy(ctx);
    return rc;
}
