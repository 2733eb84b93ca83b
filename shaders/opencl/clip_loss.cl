// y = (CE of rows + CE of columns of exp(t[0]) s, labels i = i) / 2, mean over i
// and its gradient (clip_loss_grad): which 0: dy[0] d y / d s, which 1: d y / d t.
//
// As backends/cpu/clip_loss.c (its comment has the formulas) and
// shaders/vulkan/clip_loss.comp (the same plan): one work-group of ROW_LS
// work-items for the whole n x n problem; the columns' log-sum-exps first
// (work-item j mod ROW_LS streams the rows for column j; the loss adds up
// its columns' CE, the gradient keeps them in `col_lse`, n floats of local
// memory), then row by row the row's max and sum by work-group reductions.
// FP_CONTRACT is off (common.cl).

float clip_lse_col(global const float *s, int n, int c, float e) {
    float m = -INFINITY;
    for (int r = 0; r < n; r++) {
        const float x = e * s[(size_t)r * n + c];
        m = x > m ? x : m;
    }
    float sum = 0.0f;
    for (int r = 0; r < n; r++) sum += pclip_exp(e * s[(size_t)r * n + c] - m);
    return m + log(sum);
}

float clip_lse_row(local float *red, global const float *row, int n, float e) {
    const int lid = get_local_id(0);
    float m = -INFINITY;
    for (int c = lid; c < n; c += ROW_LS) {
        const float x = e * row[c];
        m = x > m ? x : m;
    }
    m = pclip_max(red, m);
    float part = 0.0f;
    for (int c = lid; c < n; c += ROW_LS) part += pclip_exp(e * row[c] - m);
    return m + log(pclip_sum(red, part));
}

// pclip__clip_loss_params
kernel __attribute__((reqd_work_group_size(ROW_LS, 1, 1))) void
clip_loss(global const float *s, uint so, global const float *t, uint to, global float *y,
          uint yo, pclip__clip_loss_params p) {
    local float red[ROW_LS];
    const int lid = get_local_id(0), n = p.n;
    s += so;
    const float e = pclip_exp(t[to]);
    float col_part = 0.0f;
    for (int c = lid; c < n; c += ROW_LS)
        col_part += clip_lse_col(s, n, c, e) - e * s[(size_t)c * n + c];
    const float cols = pclip_sum(red, col_part);
    float rows = 0.0f;
    for (int r = 0; r < n; r++) {
        const float lse = clip_lse_row(red, s + (size_t)r * n, n, e);
        rows += lse - e * s[(size_t)r * n + r];
    }
    if (lid == 0) y[yo] = 0.5f * (rows / (float)n + cols / (float)n);
}

// pclip__clip_loss_grad_params
kernel __attribute__((reqd_work_group_size(ROW_LS, 1, 1))) void
clip_loss_grad(global const float *s, uint so, global const float *t, uint to,
               global const float *dy, uint dyo, global float *y, uint yo,
               pclip__clip_loss_grad_params p, local float *col_lse) {
    local float red[ROW_LS];
    const int lid = get_local_id(0), n = p.n;
    s += so;
    y += yo;
    const float e = pclip_exp(t[to]), dyv = dy[dyo], two_n = (float)(2 * n);
    for (int c = lid; c < n; c += ROW_LS) col_lse[c] = clip_lse_col(s, n, c, e);
    barrier(CLK_LOCAL_MEM_FENCE);
    float acc = 0.0f;
    for (int r = 0; r < n; r++) {
        global const float *row = s + (size_t)r * n;
        const float lse = clip_lse_row(red, row, n, e);
        for (int c = lid; c < n; c += ROW_LS) {
            const float x = e * row[c];
            const float g = (pclip_exp(x - lse) + pclip_exp(x - col_lse[c])) - (r == c ? 2.0f : 0.0f);
            const float dl = dyv * g / two_n;
            if (p.which == 0)
                y[(size_t)r * n + c] = e * dl;
            else
                acc += dl * x;
        }
    }
    if (p.which == 1) {
        const float total = pclip_sum(red, acc);
        if (lid == 0) y[0] = total;
    }
}
