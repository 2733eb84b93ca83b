// y = d layer_norm / d x (mode 0) | dy * xhat (mode 1), per row
//
// With xhat = (x - mean) * rstd, rstd = 1 / sqrt(var + eps) (the two passes
// of layer_norm.cl) and a = gamma * dy:
//   mode 0: y = (a - mean(a) - xhat mean(a xhat)) * rstd
//   mode 1: y = dy * xhat
// One work-group of ROW_LS work-items per row; sums are common.cl's
// reductions.

// pclip__layer_norm_grad_params
kernel __attribute__((reqd_work_group_size(ROW_LS, 1, 1))) void
layer_norm_grad(global const float *x, uint xo, global const float *g, uint go,
                global const float *dy, uint dyo, global float *y, uint yo,
                pclip__layer_norm_grad_params p) {
    local float red[ROW_LS];
    const size_t row = get_group_id(0);
    const int lid = get_local_id(0), cols = p.cols;
    global const float *xr = x + xo + row * cols;
    global const float *dr = dy + dyo + row * cols;
    global const float *gr = g + go;
    global float *yr = y + yo + row * cols;
    float s = 0.0f;
    for (int j = lid; j < cols; j += ROW_LS) s += xr[j];
    const float mean = pclip_sum(red, s) / (float)cols;
    float q = 0.0f;
    for (int j = lid; j < cols; j += ROW_LS) {
        float d = xr[j] - mean;
        q += d * d;
    }
    const float rstd = 1.0f / sqrt(pclip_sum(red, q) / (float)cols + p.eps);
    // every work-item reaches every barrier in both modes (PoCL mishandles
    // a return before a barrier, even a uniform one): mode 1 adds zeros
    float sa = 0.0f, sax = 0.0f;
    if (p.mode == 0)
        for (int j = lid; j < cols; j += ROW_LS) {
            const float a = gr[j] * dr[j];
            sa += a;
            sax += a * ((xr[j] - mean) * rstd);
        }
    const float ma = pclip_sum(red, sa) / (float)cols;
    const float mean_ax = pclip_sum(red, sax) / (float)cols;
    if (p.mode == 1)
        for (int j = lid; j < cols; j += ROW_LS) yr[j] = dr[j] * ((xr[j] - mean) * rstd);
    else
        for (int j = lid; j < cols; j += ROW_LS)
            yr[j] = (gr[j] * dr[j] - ma - (xr[j] - mean) * rstd * mean_ax) * rstd;
}
