/* The training ops against plain transcriptions of what PyTorch computes:
 * AdamW steps (torch.optim.AdamW, torch 1.13's single-tensor code) with
 * weight decay on a PARAM and the logit scale's clamp, and CLIP's symmetric
 * contrastive loss with its gradients on a 2 x 2 case whose values come
 * from torch (float64, F.cross_entropy of the logits and their transpose),
 * plus the builders' shape errors. The parity cases (check_ops) compare the
 * backends with each other; this suite compares each with the algorithm.
 *
 *   check_train_ops cpu|vulkan|opencl
 *
 * A backend this machine cannot open prints "skipped: <backend>: <reason>"
 * and exits 77. */
#define _POSIX_C_SOURCE 200809L
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/backend.h"
#include "testutil.h"

static const char *backend = "cpu"; /* under test */
static int32_t test_device = 0;

#define ck_assert_err_has(ctx, needle)                                                             \
    ck_assert_msg(strstr(pclip_ctx_last_error(ctx), needle) != NULL, "message '%s' lacks '%s'",    \
                  pclip_ctx_last_error(ctx), needle)

/* ---- AdamW ---- */

/* One param's AdamW state on the host, stepped as torch 1.13's
 * _single_tensor_adamw writes it, in float with each operation rounded
 * (Python scalars become float where they meet a float tensor):
 *   param.mul_(1 - lr * weight_decay)
 *   exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
 *   exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
 *   denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
 *   param.addcdiv_(exp_avg, denom, value=-step_size)
 * then CLIP's clamp of the logit scale (param.clamp_(max=ln 100)). */
typedef struct host_adamw {
    double lr, wd, beta1, beta2;
    float eps, clamp_max;
} host_adamw;

static void host_adamw_step(const host_adamw *o, int step, int n, float *p, const float *g,
                            float *m, float *v) {
    const double bc1 = 1.0 - pow(o->beta1, step), bc2 = 1.0 - pow(o->beta2, step);
    const float decay = (float)(1.0 - o->lr * o->wd), step_size = (float)(o->lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    const float b1 = (float)o->beta1, b2 = (float)o->beta2;
    const float omb1 = (float)(1.0 - o->beta1), omb2 = (float)(1.0 - o->beta2);
    for (int i = 0; i < n; i++) {
        p[i] = p[i] * decay;
        m[i] = m[i] * b1 + g[i] * omb1;
        v[i] = v[i] * b2 + g[i] * g[i] * omb2;
        const float denom = sqrtf(v[i]) / bc2_sqrt + o->eps;
        p[i] = p[i] - step_size * m[i] / denom;
        if (o->clamp_max < p[i]) p[i] = o->clamp_max;
    }
}

/* The per-step input h of pclip__adamw, from the host in double. */
static void adamw_h(const host_adamw *o, int step, float h[3]) {
    h[0] = (float)(1.0 - o->lr * o->wd);
    h[1] = (float)(o->lr / (1.0 - pow(o->beta1, step)));
    h[2] = (float)sqrt(1.0 - pow(o->beta2, step));
}

typedef struct adamw_param {
    pclip__param *p, *m, *v;
    pclip__tensor *g, *h;
} adamw_param;

static void adamw_param_make(pclip_ctx_t ctx, pclip_backend_t b, pclip__graph *gr, const char *name,
                             int n, const float *init, const host_adamw *o, adamw_param *out) {
    const int64_t ne[1] = {n}, three[1] = {3};
    char buf[64];
    snprintf(buf, sizeof buf, "%s", name);
    ck_assert_status(ctx, pclip__param_create(b, buf, 1, ne, &out->p), PCLIP_STATUS_OK);
    snprintf(buf, sizeof buf, "%s.exp_avg", name);
    ck_assert_status(ctx, pclip__param_create(b, buf, 1, ne, &out->m), PCLIP_STATUS_OK);
    snprintf(buf, sizeof buf, "%s.exp_avg_sq", name);
    ck_assert_status(ctx, pclip__param_create(b, buf, 1, ne, &out->v), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__param_write(out->p, init), PCLIP_STATUS_OK);
    out->g = pclip__input(gr, "grad", PCLIP__DTYPE_F32, 1, ne);
    out->h = pclip__input(gr, "h", PCLIP__DTYPE_F32, 1, three);
    ck_assert_ptr_nonnull(pclip__adamw(
        gr, name, pclip__param_tensor(gr, out->p), out->g, pclip__param_tensor(gr, out->m),
        pclip__param_tensor(gr, out->v), out->h, o->beta1, o->beta2, o->eps, o->clamp_max));
}

static void adamw_param_destroy(adamw_param *a) {
    pclip__param_destroy(a->p);
    pclip__param_destroy(a->m);
    pclip__param_destroy(a->v);
}

/* p within 4 ulp (a GPU's sqrt and division may be off by an ulp or two in
 * the update, which is ~1e-2 of p); m and v bit-exact (products and sums
 * only, contraction off on every backend). */
static void adamw_compare(const char *what, int step, int n, pclip__param *pp, pclip__param *pm,
                          pclip__param *pv, const float *p, const float *m, const float *v) {
    float *got = malloc((size_t)n * 3 * sizeof *got);
    ck_assert_ptr_nonnull(got);
    ck_assert_int_eq(pclip__param_read(pp, got), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__param_read(pm, got + n), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__param_read(pv, got + 2 * n), PCLIP_STATUS_OK);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(fabsf(got[i] - p[i]) <= 4 * FLT_EPSILON * fabsf(p[i]),
                      "%s[%d] after step %d on %s: %.9g, torch's algorithm gives %.9g", what, i,
                      step, backend, (double)got[i], (double)p[i]);
        ck_assert_msg(got[n + i] == m[i] && got[2 * n + i] == v[i],
                      "%s[%d] moments after step %d on %s: %.9g %.9g, expected %.9g %.9g", what, i,
                      step, backend, (double)got[n + i], (double)got[2 * n + i], (double)m[i],
                      (double)v[i]);
    }
    free(got);
}

/* Three steps on a head weight (weight decay 0.1) and on the logit scale
 * (no decay; clamped at ln 100, which its gradient pushes it past). */
START_TEST(test_adamw_steps) {
    pclip_ctx_t ctx;
    pclip_backend_t b;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, backend, test_device, &b), PCLIP_STATUS_OK);
    enum { N = 37, STEPS = 3 };
    const float ln100 = 4.60517019f;
    const host_adamw ow = {1e-2, 0.1, 0.9, 0.999, 1e-8f, INFINITY};
    const host_adamw ot = {1e-2, 0.0, 0.9, 0.999, 1e-8f, ln100};
    float pw[N], mw[N] = {0}, vw[N] = {0}, gw[N], hw[3];
    float pt[1] = {4.6f}, mt[1] = {0}, vt[1] = {0}, gt[1] = {-1.0f}, ht[3];
    for (int i = 0; i < N; i++) pw[i] = (float)(i % 13 - 6) * 0.1f;

    pclip__graph *g = NULL;
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    adamw_param w, t;
    adamw_param_make(ctx, b, g, "head.weight", N, pw, &ow, &w);
    adamw_param_make(ctx, b, g, "logit_scale", 1, pt, &ot, &t);
    ck_assert_int_eq(g->status, PCLIP_STATUS_OK);
    pclip__exec *e = NULL;
    ck_assert_status(ctx, pclip__exec_create(b, g, &e), PCLIP_STATUS_OK);
    ck_assert_int_eq(e->plan.n_nodes, 2); /* no output, yet both steps run */
    for (int s = 1; s <= STEPS; s++) {
        for (int i = 0; i < N; i++) gw[i] = (float)((i * 7 + s * 3) % 11 - 5) * 0.1f;
        adamw_h(&ow, s, hw);
        adamw_h(&ot, s, ht);
        ck_assert_int_eq(pclip__exec_write(e, w.g, gw), PCLIP_STATUS_OK);
        ck_assert_int_eq(pclip__exec_write(e, w.h, hw), PCLIP_STATUS_OK);
        ck_assert_int_eq(pclip__exec_write(e, t.g, gt), PCLIP_STATUS_OK);
        ck_assert_int_eq(pclip__exec_write(e, t.h, ht), PCLIP_STATUS_OK);
        ck_assert_status(ctx, pclip__exec_run(e), PCLIP_STATUS_OK);
        host_adamw_step(&ow, s, N, pw, gw, mw, vw);
        host_adamw_step(&ot, s, 1, pt, gt, mt, vt);
        adamw_compare("head.weight", s, N, w.p, w.m, w.v, pw, mw, vw);
        adamw_compare("logit_scale", s, 1, t.p, t.m, t.v, pt, mt, vt);
    }
    /* the clamp held: 4.6 + ~3 x lr would pass ln 100 */
    float got;
    ck_assert_int_eq(pclip__param_read(t.p, &got), PCLIP_STATUS_OK);
    ck_assert_msg(got == ln100, "logit_scale %.9g on %s, expected the clamp %.9g", (double)got,
                  backend, (double)ln100);
    /* weight decay acted: a zero-gradient element shrinks by (1 - lr wd) per step */
    ck_assert_float_ne(pw[0], -0.6f);
    pclip__exec_destroy(e);
    pclip__graph_destroy(g);
    adamw_param_destroy(&w);
    adamw_param_destroy(&t);
    pclip_backend_destroy(b);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* ---- the contrastive loss ---- */

/* s [2, 2] and t; loss, d loss / d s and d loss / d t from torch in float64:
 * L = t.exp() * s; (F.cross_entropy(L, [0, 1]) + F.cross_entropy(L.T, [0, 1])) / 2.
 * By hand for the first: rows CE ln(1 + e) - 1 and ln(1 + e^-0.5), columns
 * the same two, so the loss is their mean, 0.3936693358. */
static const struct {
    float t, s[4];
    double loss, ds[4], dt;
    double tol; /* absolute; fp32's own error grows with the logits |e^t s| */
} clip_cases[] = {
    {0.0f,
     {1.0f, 0.0f, 0.5f, 1.0f},
     0.39366933584916475,
     {-0.16162052254203513, 0.13447071068499755, 0.1887703343990727, -0.16162052254203513},
     -0.2288558778845339,
     1e-6},
    {4.60517019f, /* ln 100, the clamp */
     {0.3f, 0.2f, 0.25f, 0.3f},
     0.0033803736941674187,
     {-0.16845621982467815, 0.002269893435121719, 0.3346425462142429, -0.16845621982467815},
     -0.01695911665422181,
     1e-4}, /* x - lse(x) loses lse's low bits (ulp(30) = 1.9e-6), times e / (2 n) = 25 in
               d s; measured <= 2.3e-5 */
};

START_TEST(test_clip_loss_small) {
    pclip_ctx_t ctx;
    pclip_backend_t b;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, backend, test_device, &b), PCLIP_STATUS_OK);
    const int64_t ne[2] = {2, 2}, one[1] = {1};
    pclip__graph *g = NULL;
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    pclip__tensor *s = pclip__input(g, "s", PCLIP__DTYPE_F32, 2, ne);
    pclip__tensor *t = pclip__input(g, "t", PCLIP__DTYPE_F32, 1, one);
    pclip__tensor *dy = pclip__input(g, "dy", PCLIP__DTYPE_F32, 1, one);
    pclip__tensor *loss = pclip__clip_loss(g, "loss", s, t);
    pclip__tensor *ds = pclip__clip_loss_grad(g, "ds", s, t, dy, 0);
    pclip__tensor *dt = pclip__clip_loss_grad(g, "dt", s, t, dy, 1);
    ck_assert_int_eq(pclip__graph_output(g, loss), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__graph_output(g, ds), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__graph_output(g, dt), PCLIP_STATUS_OK);
    pclip__exec *e = NULL;
    ck_assert_status(ctx, pclip__exec_create(b, g, &e), PCLIP_STATUS_OK);
    for (size_t c = 0; c < sizeof clip_cases / sizeof clip_cases[0]; c++) {
        const float one_f = 1.0f;
        float y, d[4], yt;
        ck_assert_int_eq(pclip__exec_write(e, s, clip_cases[c].s), PCLIP_STATUS_OK);
        ck_assert_int_eq(pclip__exec_write(e, t, &clip_cases[c].t), PCLIP_STATUS_OK);
        ck_assert_int_eq(pclip__exec_write(e, dy, &one_f), PCLIP_STATUS_OK);
        ck_assert_status(ctx, pclip__exec_run(e), PCLIP_STATUS_OK);
        ck_assert_int_eq(pclip__exec_read(e, loss, &y), PCLIP_STATUS_OK);
        ck_assert_int_eq(pclip__exec_read(e, ds, d), PCLIP_STATUS_OK);
        ck_assert_int_eq(pclip__exec_read(e, dt, &yt), PCLIP_STATUS_OK);
        const double tol = clip_cases[c].tol;
        ck_assert_msg(fabs(y - clip_cases[c].loss) <= tol,
                      "case %zu on %s: loss %.9g, torch %.9g (tolerance %g)", c, backend, (double)y,
                      clip_cases[c].loss, tol);
        for (int i = 0; i < 4; i++)
            ck_assert_msg(fabs(d[i] - clip_cases[c].ds[i]) <= tol,
                          "case %zu on %s: d s[%d] %.9g, torch %.9g (tolerance %g)", c, backend, i,
                          (double)d[i], clip_cases[c].ds[i], tol);
        ck_assert_msg(fabs(yt - clip_cases[c].dt) <= tol,
                      "case %zu on %s: d t %.9g, torch %.9g (tolerance %g)", c, backend, (double)yt,
                      clip_cases[c].dt, tol);
        if (getenv("PCLIP_TRAIN_VERBOSE"))
            printf("case %zu: loss err %.3g, ds err %.3g %.3g %.3g %.3g, dt err %.3g\n", c,
                   fabs(y - clip_cases[c].loss), fabs(d[0] - clip_cases[c].ds[0]),
                   fabs(d[1] - clip_cases[c].ds[1]), fabs(d[2] - clip_cases[c].ds[2]),
                   fabs(d[3] - clip_cases[c].ds[3]), fabs(yt - clip_cases[c].dt));
    }
    pclip__exec_destroy(e);
    pclip__graph_destroy(g);
    pclip_backend_destroy(b);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* ---- limits: the builders' shape checks ---- */

START_TEST(test_shape_errors) {
    pclip_ctx_t ctx;
    pclip_backend_t b;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, backend, test_device, &b), PCLIP_STATUS_OK);
    const int64_t sq[2] = {3, 3}, rect[2] = {3, 4}, one[1] = {1}, two[1] = {2}, three[1] = {3};
    const int64_t n5[1] = {5}, n6[1] = {6}, m5[2] = {5, 1};
    pclip__graph *g = NULL;
    ck_assert_int_eq(pclip__graph_create(ctx, &g), PCLIP_STATUS_OK);
    pclip__tensor *s = pclip__input(g, "s", PCLIP__DTYPE_F32, 2, sq);
    pclip__tensor *r = pclip__input(g, "r", PCLIP__DTYPE_F32, 2, rect);
    pclip__tensor *t = pclip__input(g, "t", PCLIP__DTYPE_F32, 1, one);
    pclip__tensor *t2 = pclip__input(g, "t2", PCLIP__DTYPE_F32, 1, two);
    pclip__tensor *h = pclip__input(g, "h", PCLIP__DTYPE_F32, 1, three);
    pclip__tensor *g5 = pclip__input(g, "g5", PCLIP__DTYPE_F32, 1, n5);
    pclip__tensor *g6 = pclip__input(g, "g6", PCLIP__DTYPE_F32, 1, n6);

    ck_assert_ptr_null(pclip__clip_loss(g, "loss", r, t));
    ck_assert_err_has(ctx, "clip_loss 'loss'");
    ck_assert_err_has(ctx, "r [3, 4]");
    ck_assert_ptr_null(pclip__clip_loss(g, "loss", s, t2));
    ck_assert_err_has(ctx, "[1] logit scale");
    ck_assert_ptr_null(pclip__clip_loss_grad(g, "d", s, t, t2, 0));
    ck_assert_err_has(ctx, "a [1] dy");
    ck_assert_ptr_null(pclip__clip_loss_grad(g, "d", s, t, t, 2));
    ck_assert_err_has(ctx, "which is 2");
    ck_assert_ptr_null(pclip__clip_loss(g, "loss", NULL, t)); /* a failed source */

    pclip__param *pp, *pm, *pv, *pm2;
    ck_assert_int_eq(pclip__param_create(b, "p", 1, n5, &pp), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__param_create(b, "m", 1, n5, &pm), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__param_create(b, "v", 1, n5, &pv), PCLIP_STATUS_OK);
    ck_assert_int_eq(pclip__param_create(b, "m2", 2, m5, &pm2), PCLIP_STATUS_OK);
    pclip__tensor *p = pclip__param_tensor(g, pp), *m = pclip__param_tensor(g, pm);
    pclip__tensor *v = pclip__param_tensor(g, pv), *m2 = pclip__param_tensor(g, pm2);
    ck_assert_ptr_null(pclip__adamw(g, "step", g5, g5, m, v, h, 0.9, 0.999, 1e-8f, INFINITY));
    ck_assert_err_has(ctx, "must be PARAMs");
    ck_assert_ptr_null(pclip__adamw(g, "step", p, g5, p, v, h, 0.9, 0.999, 1e-8f, INFINITY));
    ck_assert_err_has(ctx, "three different PARAMs");
    ck_assert_ptr_null(pclip__adamw(g, "step", p, g5, m2, v, h, 0.9, 0.999, 1e-8f, INFINITY));
    ck_assert_err_has(ctx, "of one shape");
    ck_assert_ptr_null(pclip__adamw(g, "step", p, g6, m, v, h, 0.9, 0.999, 1e-8f, INFINITY));
    ck_assert_err_has(ctx, "p's 5 elements");
    ck_assert_ptr_null(pclip__adamw(g, "step", p, g5, m, v, t2, 0.9, 0.999, 1e-8f, INFINITY));
    ck_assert_err_has(ctx, "h must be an f32 [3]");
    ck_assert_ptr_null(pclip__adamw(g, "step", p, g5, m, v, h, 1.0, 0.999, 1e-8f, INFINITY));
    ck_assert_err_has(ctx, "betas");
    ck_assert_ptr_null(pclip__adamw(g, "step", p, g5, m, v, h, 0.9, 0.999, 1e-8f, NAN));
    ck_assert_err_has(ctx, "clamp_max");
    ck_assert_int_eq(g->status, PCLIP_STATUS_INVALID_ARGUMENT); /* sticky */
    /* a good step returns a view of v, with side effects */
    pclip__tensor *y = pclip__adamw(g, "step", p, g5, m, v, h, 0.9, 0.999, 1e-8f, INFINITY);
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_eq(y->view_src, v);
    ck_assert_int_eq(y->kind, PCLIP__TENSOR_PARAM);
    pclip__graph_destroy(g);
    pclip__param_destroy(pp);
    pclip__param_destroy(pm);
    pclip__param_destroy(pv);
    pclip__param_destroy(pm2);
    pclip_backend_destroy(b);
    pclip_ctx_destroy(ctx);
}
END_TEST

int main(int argc, char **argv) {
    int arg = pclip_test_backend_args(argc, argv, &backend, &test_device);
    if (arg < argc) {
        fprintf(stderr, "usage: check_train_ops [cpu|vulkan|opencl]\n");
        return 2;
    }
    pclip_test_probe_backend("check_train_ops", backend, test_device);
    Suite *s = suite_create("train_ops");
    TCase *core = tcase_create("core");
    tcase_set_timeout(core, 300);
    tcase_add_test(core, test_adamw_steps);
    tcase_add_test(core, test_clip_loss_small);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_set_timeout(limits, 300);
    tcase_add_test(limits, test_shape_errors);
    suite_add_tcase(s, limits);
    return pclip_test_run(s);
}
