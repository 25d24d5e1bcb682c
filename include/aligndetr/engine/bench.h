#pragma once
// `aligndetr bench`: the speed of a configured detector on this machine, with the numbers that
// say how far it is from what the hardware allows. Inference (forward and post-processing) or
// whole training steps (forward, criterion, backward, clipping, AdamW) on random images and
// boxes; the median and spread over timed iterations after a warm-up, peak memory, a breakdown
// by stage (the scopes the models record: backbone, neck, encoder, proposals, decoder; and the
// bench's own: postprocess, criterion, backward, optimizer), the top operators by self time, and
// the roofline: the model's multiply-adds (fvcore's count, convolutions and matrix products)
// divided by the rates this machine measures for its convolutions and matrix products at the
// same precision. A benchmark never asserts a time.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "aligndetr/engine/experiment.h"

namespace aligndetr::engine {

struct BenchOptions {
  int64_t height = 800, width = 1216;
  int64_t batch = 1;
  bool train = false;
  bool bf16 = false;  // bfloat16 autocast (losses and matching stay float32)
  int warmup = 1;
  int iterations = 3;
  bool profile = true;  // one more iteration, observed operator by operator
  int top_operators = 12;
};

// This machine's measured rates, in multiply-adds per second (fvcore's "FLOP"), on the threads
// LibTorch is set to use. run_bench measures them before and after the timed iterations and
// keeps each one's best.
struct MachineRates {
  // A 2048^3 matrix product (BLAS or ops::linear's route, the faster); a ResNet 3x3 convolution.
  double matmul_fp32 = 0, conv_fp32 = 0;
  double matmul_bf16 = 0, conv_bf16 = 0;  // 0 when not measured
  std::string cpu;                        // model name
  std::vector<std::string> features;      // of avx2, avx512f, avx512_bf16, amx_bf16, amx_tile
  std::string deform_kernel;              // ops::ms_deform_attn_cpu_kernel()
  std::string attention_kernel;           // ops::blocked_attention_kernel()
  std::string allocator;                  // the process's malloc: "tcmalloc 2.10", "glibc"
  int threads = 1;
};
MachineRates measure_machine(bool bf16);

struct OperatorTime {
  std::string name;
  double self_seconds = 0;  // in the profiled iteration, without nested operators
  int64_t calls = 0;
};

struct BenchReport {
  BenchOptions options;
  std::string config;
  std::vector<double> seconds;           // each timed iteration
  std::map<std::string, double> stages;  // median seconds per stage over the timed iterations
  std::vector<std::string> stage_order;  // as first seen
  double gmacs = 0;                      // multiply-adds of one iteration, in billions
  double gmacs_conv = 0, gmacs_matmul = 0;
  double roofline_seconds = 0;           // gmacs at the measured rates
  double peak_rss_gib = 0;               // the process's peak resident memory
  double page_faults_per_iteration = 0;  // minor faults (memory the allocator maps afresh)
  std::vector<OperatorTime> operators;   // top by self time
  MachineRates machine;

  double median() const;
  double min() const;
  double max() const;
  double images_per_second() const;
  double roofline_ratio() const;  // median / roofline: 1 is the hardware's limit
  std::string text() const;
  std::string json() const;
};

// Throws InputError for options that mean nothing (sizes, counts) or a bf16 request this
// LibTorch cannot run on the CPU.
BenchReport run_bench(const Experiment& experiment, const BenchOptions& options);

}  // namespace aligndetr::engine
