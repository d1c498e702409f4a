// ROIPooling as in caffe-fast-rcnn (max pooling over ROI bins).
//
// Written for torchcaffe.  Semantics: every ROI row is
// [batch_index, x1, y1, x2, y2] in input pixels; the coordinates are scaled
// by spatial_scale and THEN rounded half away from zero (C roundf); box sizes
// carry +1 and are at least 1; bin edges are floor/ceil of multiples of the
// (float) bin size, shifted by the box origin and clipped to the feature map;
// the first maximum in row-major order wins (strict '>' against a running
// maximum starting at -FLT_MAX); an empty bin gives 0 with argmax -1.
//
// The file is plain CUDA C; it also compiles as host C++ (the test suite does
// that, with tiny stand-ins for the CUDA built-ins) so its logic runs on a CPU.

#ifndef TC_FLT_MAX
#define TC_FLT_MAX 3.402823466e+38F
#endif

#define TC_GRID_LOOP(i, n)                                            \
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; \
       i < (n); i += (long long)blockDim.x * gridDim.x)

// Rounded, scaled box of ROI `r` and its float bin sizes.
__device__ __forceinline__ void tc_roi_box(const float* rois, long long r,
                                           float spatial_scale, int pooled_h,
                                           int pooled_w, int* batch, int* x1,
                                           int* y1, float* bin_h,
                                           float* bin_w) {
  const float* roi = rois + r * 5;
  *batch = (int)roi[0];
  const int xs = (int)roundf(roi[1] * spatial_scale);
  const int ys = (int)roundf(roi[2] * spatial_scale);
  const int xe = (int)roundf(roi[3] * spatial_scale);
  const int ye = (int)roundf(roi[4] * spatial_scale);
  int rw = xe - xs + 1;
  int rh = ye - ys + 1;
  if (rw < 1) rw = 1;
  if (rh < 1) rh = 1;
  *x1 = xs;
  *y1 = ys;
  *bin_h = (float)rh / (float)pooled_h;
  *bin_w = (float)rw / (float)pooled_w;
}

__device__ __forceinline__ int tc_clampi(int v, int lo, int hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// One thread per top element (r, c, ph, pw).
extern "C" __global__ void roi_pool_forward(
    const long long nthreads, const float* __restrict__ bottom,
    const float spatial_scale, const int channels, const int height,
    const int width, const int pooled_h, const int pooled_w,
    const float* __restrict__ rois, float* __restrict__ top,
    int* __restrict__ argmax) {
  TC_GRID_LOOP(index, nthreads) {
    const int pw = (int)(index % pooled_w);
    const int ph = (int)((index / pooled_w) % pooled_h);
    const int c = (int)((index / pooled_w / pooled_h) % channels);
    const long long r = index / pooled_w / pooled_h / channels;

    int b, x1, y1;
    float bin_h, bin_w;
    tc_roi_box(rois, r, spatial_scale, pooled_h, pooled_w, &b, &x1, &y1,
               &bin_h, &bin_w);

    int hs = (int)floorf((float)ph * bin_h);
    int ws = (int)floorf((float)pw * bin_w);
    int he = (int)ceilf((float)(ph + 1) * bin_h);
    int we = (int)ceilf((float)(pw + 1) * bin_w);
    hs = tc_clampi(hs + y1, 0, height);
    he = tc_clampi(he + y1, 0, height);
    ws = tc_clampi(ws + x1, 0, width);
    we = tc_clampi(we + x1, 0, width);

    const bool empty = (he <= hs) || (we <= ws);
    float best = empty ? 0.f : -TC_FLT_MAX;
    int best_idx = -1;
    const float* plane =
        bottom + ((long long)b * channels + c) * (long long)height * width;
    for (int h = hs; h < he; ++h) {
      for (int w = ws; w < we; ++w) {
        const int k = h * width + w;
        if (plane[k] > best) {
          best = plane[k];
          best_idx = k;
        }
      }
    }
    top[index] = best;
    argmax[index] = best_idx;
  }
}

// One thread per bottom element (n, c, h, w): sums the top diffs of every bin
// (of every ROI on image n) whose argmax is this element, in ROI order --
// deterministic, no atomics.
extern "C" __global__ void roi_pool_backward(
    const long long nthreads, const float* __restrict__ top_diff,
    const int* __restrict__ argmax, const int num_rois,
    const float spatial_scale, const int channels, const int height,
    const int width, const int pooled_h, const int pooled_w,
    const float* __restrict__ rois, float* __restrict__ bottom_diff) {
  TC_GRID_LOOP(index, nthreads) {
    const int w = (int)(index % width);
    const int h = (int)((index / width) % height);
    const int c = (int)((index / width / height) % channels);
    const int n = (int)(index / width / height / channels);
    const int here = h * width + w;

    float acc = 0.f;
    for (int r = 0; r < num_rois; ++r) {
      int b, x1, y1;
      float bin_h, bin_w;
      tc_roi_box(rois, r, spatial_scale, pooled_h, pooled_w, &b, &x1, &y1,
                 &bin_h, &bin_w);
      if (b != n) continue;
      // Bins can reach one pixel past the rounded box (ceil), and are clipped
      // to the map, so test candidate bins rather than the box itself.
      int phs = (int)floorf((float)(h - y1) / bin_h) - 1;
      int phe = (int)ceilf((float)(h - y1 + 1) / bin_h) + 1;
      int pws = (int)floorf((float)(w - x1) / bin_w) - 1;
      int pwe = (int)ceilf((float)(w - x1 + 1) / bin_w) + 1;
      phs = tc_clampi(phs, 0, pooled_h);
      phe = tc_clampi(phe, 0, pooled_h);
      pws = tc_clampi(pws, 0, pooled_w);
      pwe = tc_clampi(pwe, 0, pooled_w);
      const long long base = ((long long)r * channels + c) * pooled_h * pooled_w;
      for (int ph = phs; ph < phe; ++ph) {
        for (int pw = pws; pw < pwe; ++pw) {
          const long long k = base + (long long)ph * pooled_w + pw;
          if (argmax[k] == here) acc += top_diff[k];
        }
      }
    }
    bottom_diff[index] = acc;
  }
}
