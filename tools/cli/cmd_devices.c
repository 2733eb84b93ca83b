/* portclip devices and verify: what the library finds on this machine, and
 * the parity of every backend/device against the CPU reference. verify runs
 * the parity cases the library exports (the same ones the test suite runs);
 * it computes nothing itself, and opens each backend it checks on its own. */
#include <string.h>

#include "cli.h"

/* ---- devices ---- */

#define MAX_DEVICES 64

int cmd_devices(cli_run *run) {
    pclip_device_desc devs[MAX_DEVICES];
    int32_t n = 0;
    pclip_status st = pclip_devices_list(run->ctx, devs, MAX_DEVICES, &n);
    if (st) return cli_fail(run->ctx, st);
    for (int32_t i = 0; i < n && i < MAX_DEVICES; i++) {
        const pclip_device_desc *d = &devs[i];
        if (!d->usable) {
            printf("%-7s -  unusable: %s\n", d->backend, d->why);
            continue;
        }
        printf("%-7s %d  %s\n", d->backend, d->index, d->name);
        printf("           type %s%s, vendor %s, driver %s, api %s\n", d->type,
               d->software ? " (software: auto skips it)" : "", d->vendor[0] ? d->vendor : "-",
               d->driver[0] ? d->driver : "-", d->api_version[0] ? d->api_version : "-");
        printf("           memory %.1f GiB", (double)d->memory_bytes / (1024.0 * 1024 * 1024));
        if (d->subgroup_size) printf(", subgroup %d", d->subgroup_size);
        if (d->features[0]) printf(", features: %s", d->features);
        putchar('\n');
        printf("           precision %s%s%s%s\n", d->precisions[0] ? d->precisions : "fp32",
               d->precision_why[0] ? " (" : "", d->precision_why, d->precision_why[0] ? ")" : "");
    }
    pclip_backend_t b;
    if (pclip_backend_create(run->ctx, "auto", -1, &b) == PCLIP_STATUS_OK) {
        printf("auto -> %s: %s", pclip_backend_name(b), pclip_backend_device_name(b));
        if (pclip_backend_fallback_reason(b)[0]) printf(" (%s)", pclip_backend_fallback_reason(b));
        putchar('\n');
        pclip_backend_destroy(b);
    }
    return CLI_EXIT_OK; /* main.c checks that stdout was written */
}

/* ---- verify ---- */

static void print_row(const char *backend, int32_t device, const pclip_parity_row *r) {
    printf("%-7s %-3d %-64s %10.3g %9.3g  %s%s%s\n", backend, (int)device, r->case_name, r->error,
           r->tolerance, r->passed ? "pass" : "FAIL", r->passed ? "" : ": ", r->why);
}

/* Runs every op case (and the encoders, with a model) on one device, printing
 * a row each. Returns the number of failures. */
static int verify_device(pclip_ctx_t ctx, pclip_backend_t ref, const char *backend, int32_t device,
                         pclip_model_t model) {
    pclip_backend_t b;
    pclip_status st = pclip_backend_create(ctx, backend, device, &b);
    if (st) {
        printf("%-7s %-3d %-64s %10s %9s  FAIL: %s\n", backend, (int)device, "(open)", "-", "-",
               pclip_ctx_last_error(ctx));
        return 1;
    }
    int failures = 0;
    size_t n = pclip_parity_case_count();
    for (size_t i = 0; i < n; i++) {
        pclip_parity_row row;
        if (pclip_parity_run_case(ctx, ref, b, i, &row)) {
            memset(&row, 0, sizeof row);
            snprintf(row.case_name, sizeof row.case_name, "case %zu", i);
            snprintf(row.why, sizeof row.why, "%s", pclip_ctx_last_error(ctx));
        }
        failures += !row.passed;
        print_row(backend, device, &row);
    }
    if (model) {
        pclip_parity_row rows[2];
        if (pclip_parity_run_model(ctx, model, ref, b, rows)) {
            memset(rows, 0, sizeof rows);
            snprintf(rows[0].case_name, sizeof rows[0].case_name, "encoders");
            snprintf(rows[0].why, sizeof rows[0].why, "%s", pclip_ctx_last_error(ctx));
            print_row(backend, device, &rows[0]);
            failures++;
        } else {
            for (int k = 0; k < 2; k++) {
                failures += !rows[k].passed;
                print_row(backend, device, &rows[k]);
            }
        }
    }
    /* the model's graphs on b go with it */
    pclip_backend_destroy(b);
    fflush(stdout); /* a row per case as it finishes; main.c checks the writes */
    return failures;
}

int cmd_verify(cli_run *run) {
    pclip_ctx_t ctx = run->ctx;
    if (run->head_dir && !run->model) cli_usage_error("verify: --head needs --model DIR");
    pclip_backend_t ref;
    pclip_status st = pclip_backend_create(ctx, "cpu", 1, &ref);
    if (st) return cli_fail(ctx, st);
    printf("reference: cpu 1 (%s); %zu op cases per device%s\n", pclip_backend_device_name(ref),
           pclip_parity_case_count(), run->model ? " + 2 encoder cases" : "");
    printf("%-7s %-3s %-64s %10s %9s  %s\n", "backend", "dev", "case", "error", "tolerance",
           "result");
    int failures = 0, devices = 0;
    if (run->backend_name && strcmp(run->backend_name, "auto") != 0) {
        int32_t device = run->device < 0 ? 0 : run->device;
        failures += verify_device(ctx, ref, run->backend_name, device, run->model);
        devices++;
    } else {
        pclip_device_desc devs[MAX_DEVICES];
        int32_t n = 0;
        if ((st = pclip_devices_list(ctx, devs, MAX_DEVICES, &n))) {
            pclip_backend_destroy(ref);
            return cli_fail(ctx, st);
        }
        for (int32_t i = 0; i < n && i < MAX_DEVICES; i++) {
            const pclip_device_desc *d = &devs[i];
            if (!d->usable) {
                printf("%-7s -   skipped: %s\n", d->backend, d->why);
                continue;
            }
            if (strcmp(d->backend, "cpu") == 0 && d->index == 1) continue; /* the reference */
            failures += verify_device(ctx, ref, d->backend, d->index, run->model);
            devices++;
        }
    }
    printf("%d device%s checked, %d failure%s\n", devices, devices == 1 ? "" : "s", failures,
           failures == 1 ? "" : "s");
    pclip_backend_destroy(ref);
    if (failures)
        return cli_error(CLI_EXIT_FAILURE, "verify: %d failure%s (the FAIL rows above)", failures,
                         failures == 1 ? "" : "s");
    return CLI_EXIT_OK;
}
