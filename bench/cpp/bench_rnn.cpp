// The configurations of bench/bench_rnn.py timed from C++ alone (the engine, no Python, no torch):
// inference forward and training step (forward + backward with input and weight gradients),
// median time, tokens/s, GFLOP/s and the fraction of the sgemm rate of the same GEMM backend.
//
//   rnncore_bench [--threads 1,2] [--configs small,medium] [--cells lstm] [--quick] [--reps N]
//                 [--target-s S] [--blas /path/to/libopenblas.so] [--json out.json] [--no-tiny]
//
// FLOPs as in bench_rnn.py: forward per layer and direction 2 * tokens * (I_l + H) * G * H;
// a training step counts 3x. See bench/README.md for the columns.
#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <dlfcn.h>
#include <unistd.h>

#include "rnncore/rnncore.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Config {
  std::string name;
  int layers;
  bool bidirectional;
  int B, T, I, H;
  std::vector<std::string> cells;
  bool train = true;    // false: inference only
  bool ragged = false;  // lengths uniform in [T / 10, T], the same draw as bench_rnn.py
  int D() const { return bidirectional ? 2 : 1; }
};

const std::vector<std::string> kAllCells = {"rnn", "lstm", "gru"};

// bench_rnn.py's CONFIGS.
std::vector<Config> configs() {
  return {
      {"small", 1, false, 32, 50, 128, 128, kAllCells},
      {"medium", 1, false, 64, 100, 512, 512, kAllCells},
      {"large", 1, false, 32, 50, 1024, 1024, kAllCells},
      {"long", 1, false, 16, 1000, 256, 256, kAllCells},
      {"charlm", 2, false, 64, 100, 65, 512, {"lstm", "gru"}},
      {"bilstm_tagger", 2, true, 32, 40, 100, 256, {"lstm"}},
      {"b1_latency", 1, false, 1, 100, 256, 256, kAllCells, /*train=*/false},
      {"ragged", 1, true, 64, 100, 256, 256, {"lstm"}, true, /*ragged=*/true},
  };
}

Config quick_config(Config c) {  // same structure, small shapes (bench_rnn.py's quick_config)
  c.B = std::min(c.B, 8);
  c.T = std::min(c.T, 20);
  c.I = std::min(c.I, 64);
  c.H = std::min(c.H, 64);
  return c;
}

// numpy.random.default_rng(1234).integers(T // 10, T + 1, size=B) for the two ragged shapes, so
// that the C++ and Python benchmarks time the very same batch.
std::vector<std::int64_t> ragged_lengths(const Config& c) {
  if (c.B == 64 && c.T == 100)
    return {99, 98, 99, 44, 25, 94, 19, 33, 22, 39, 58, 20, 82, 32, 81, 38, 82, 97, 97, 33, 60, 50,
            33, 65, 91, 88, 68, 88, 57, 71, 96, 70, 14, 76, 77, 30, 88, 25, 81, 89, 53, 15, 24, 72,
            13, 71, 22, 65, 59, 15, 26, 98, 46, 49, 51, 58, 27, 10, 68, 32, 69, 88, 49, 48};
  if (c.B == 8 && c.T == 20) return {20, 20, 20, 9, 5, 19, 3, 6};
  std::mt19937_64 gen(1234);  // other shapes: the same distribution, another draw
  std::uniform_int_distribution<std::int64_t> d(std::max(1, c.T / 10), c.T);
  std::vector<std::int64_t> out(std::size_t(c.B));
  for (auto& v : out) v = d(gen);
  return out;
}

// The registry entry of a cell name ("rnn", "lstm", "gru", ...).
const rnncore::CellInfo& cell_entry(const std::string& cell) {
  const rnncore::CellInfo* c = rnncore::find_cell(cell);
  if (!c) throw std::invalid_argument("unknown cell '" + cell + "'");
  return *c;
}
int gates(const std::string& cell) { return cell_entry(cell).gates; }
rnncore::CellType cell_type(const std::string& cell) { return cell_entry(cell).id; }

double forward_flops(const Config& c, const std::string& cell, double tokens) {
  double total = 0;
  for (int l = 0; l < c.layers; ++l) {
    const double in = l == 0 ? c.I : c.D() * c.H;
    total += c.D() * 2.0 * tokens * (in + c.H) * gates(cell) * c.H;
  }
  return total;
}

// ---- timing (bench_rnn.py's Plan and measure) -------------------------------------------------

struct Plan {
  double target_s = 1.0;
  int min_reps = 3;
  int max_reps = 2000;
  double warmup_s = 0.25;
  int fixed_reps = 0;  // > 0: exactly this many
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double time_call(const std::function<void()>& run, const std::function<void()>& prep) {
  if (prep) prep();
  const auto t0 = Clock::now();
  run();
  return seconds_since(t0);
}

// Warm up for at least one call and about warmup_s (at most 50 calls), then repeat
// ceil(target_s / last warm-up time) times within [min_reps, max_reps].
std::vector<double> measure(const std::function<void()>& run, const std::function<void()>& prep,
                            const Plan& plan) {
  double spent = 0, estimate = 0;
  for (int calls = 0; calls < 50 && (calls == 0 || spent < plan.warmup_s); ++calls) {
    estimate = time_call(run, prep);
    spent += estimate;
  }
  int reps = plan.fixed_reps;
  if (reps <= 0)
    reps = int(std::min<double>(
        plan.max_reps,
        std::max<double>(plan.min_reps, std::ceil(plan.target_s / std::max(estimate, 1e-7)))));
  std::vector<double> ts;
  for (int i = 0; i < reps; ++i) ts.push_back(time_call(run, prep));
  return ts;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// ---- an optional CBLAS, plugged in with rnncore::set_blas -------------------------------------

struct Blas {
  void* handle = nullptr;
  rnncore::SgemmFn sgemm = nullptr;
  rnncore::DgemmFn dgemm = nullptr;
  void (*set_threads)(int) = nullptr;
  std::string name;
};

// Opens a CBLAS library: OpenBLAS (cblas_sgemm) or the scipy-openblas wheels' build
// (scipy_cblas_sgemm), e.g. $(python -c "import scipy_openblas32 as s; print(s.get_lib_dir())").
Blas load_blas(const std::string& path) {
  Blas b;
  b.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!b.handle) throw std::runtime_error("--blas: cannot open " + path + ": " + dlerror());
  for (const char* prefix : {"", "scipy_"}) {
    const std::string p = prefix;
    b.sgemm = reinterpret_cast<rnncore::SgemmFn>(dlsym(b.handle, (p + "cblas_sgemm").c_str()));
    b.dgemm = reinterpret_cast<rnncore::DgemmFn>(dlsym(b.handle, (p + "cblas_dgemm").c_str()));
    b.set_threads = reinterpret_cast<void (*)(int)>(dlsym(
        b.handle, (p.empty() ? "openblas_set_num_threads" : "scipy_openblas_set_num_threads")));
    if (b.sgemm && b.dgemm) break;
  }
  if (!b.sgemm || !b.dgemm) throw std::runtime_error("--blas: " + path + " has no cblas_sgemm");
  b.name = "cblas (" + path.substr(path.find_last_of('/') + 1) + ")";
  return b;
}

// Best float32 n x n GEMM rate (GFLOP/s) of the backend the engine uses, at `threads` threads.
double sgemm_peak(int n, int reps, int threads, const Blas* blas) {
  std::mt19937_64 gen(0);
  std::normal_distribution<float> d;
  std::vector<float> a(std::size_t(n) * n), b(a.size()), c(a.size());
  for (auto& v : a) v = d(gen);
  for (auto& v : b) v = d(gen);
  double best = 1e30;
  std::function<void()> run;
  if (blas) {
    if (blas->set_threads) blas->set_threads(threads);
    run = [&] {
      blas->sgemm(101, 111, 111, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    };
  } else {
    Eigen::setNbThreads(threads);
    run = [&] {
      using M = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
      Eigen::Map<M> A(a.data(), n, n), B(b.data(), n, n), C(c.data(), n, n);
      C.noalias() = A * B;
    };
  }
  run();
  run();
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Clock::now();
    run();
    best = std::min(best, seconds_since(t0));
  }
  if (blas && blas->set_threads) blas->set_threads(1);  // the engine needs a 1-thread BLAS
  return 2.0 * n * n * double(n) / best / 1e9;
}

// ---- one configuration and cell ---------------------------------------------------------------

struct Row {
  int threads;
  std::string config, cell, mode;
  double tokens, gflop, median_s, min_s, tokens_per_s, gflops, frac_peak;
  int reps;
};

std::vector<Row> bench_cell(const Config& c, const std::string& cell, int threads, const Plan& plan,
                            double peak) {
  rnncore::RecurrentConfig rc;
  rc.cell = cell_type(cell);
  rc.input_size = c.I;
  rc.hidden_size = c.H;
  rc.num_layers = c.layers;
  rc.bidirectional = c.bidirectional;
  rnncore::Recurrent<float> layer(rc);
  std::mt19937_64 gen(0);
  const float k = 1.0f / std::sqrt(float(c.H));
  std::uniform_real_distribution<float> uni(-k, k);
  for (std::size_t i = 0; i < layer.num_params(); ++i) layer.params()[i] = uni(gen);
  std::normal_distribution<float> normal;
  const std::size_t TB = std::size_t(c.T) * c.B, LDBH = std::size_t(c.layers * c.D() * c.B * c.H);
  std::vector<float> x(TB * c.I), y(TB * c.D() * c.H), dy(y.size(), 1.0f), dx(x.size());
  std::vector<float> hn(LDBH), cn(LDBH), dh0(LDBH), dc0(LDBH);
  for (auto& v : x) v = normal(gen);
  const bool lstm = cell == "lstm";
  std::vector<std::int64_t> lengths;
  double tokens = double(TB);
  if (c.ragged) {
    lengths = ragged_lengths(c);
    tokens = 0;
    for (auto l : lengths) tokens += double(l);
  }
  const std::int64_t* lens = c.ragged ? lengths.data() : nullptr;
  auto forward = [&](bool training) {
    layer.forward(c.T, c.B, x.data(), lens, nullptr, nullptr, y.data(), hn.data(),
                  lstm ? cn.data() : nullptr, training);
  };
  std::vector<Row> rows;
  for (const std::string mode : {"infer", "train"}) {
    if (mode == "train" && !c.train) continue;
    std::vector<double> ts;
    if (mode == "infer") {
      ts = measure([&] { forward(false); }, nullptr, plan);
    } else {
      ts = measure(
          [&] {
            forward(true);
            layer.backward(dy.data(), nullptr, nullptr, dx.data(), dh0.data(),
                           lstm ? dc0.data() : nullptr);
          },
          [&] { layer.zero_grad(); }, plan);
    }
    const double flops = forward_flops(c, cell, tokens) * (mode == "train" ? 3 : 1);
    Row r{threads, c.name,      cell,       mode,
          tokens,  flops / 1e9, median(ts), *std::min_element(ts.begin(), ts.end()),
          0,       0,           0,          int(ts.size())};
    r.tokens_per_s = tokens / r.median_s;
    r.gflops = flops / r.median_s / 1e9;
    r.frac_peak = peak > 0 ? r.gflops / peak : 0;
    rows.push_back(r);
  }
  return rows;
}

// Engine cost of one call where the arithmetic is negligible (bench_rnn.py's "tiny" probe without
// the Python layer): LSTM B=1 T=1 I=H=8, forward + backward, microseconds per call.
double tiny_us(bool quick) {
  rnncore::RecurrentConfig rc;
  rc.input_size = rc.hidden_size = 8;
  rnncore::Recurrent<float> layer(rc);
  std::vector<float> x(8, 0.5f), y(8), hn(8), cn(8), dy(8, 1.0f), dx(8), dh0(8), dc0(8);
  auto run = [&] {
    layer.forward(1, 1, x.data(), nullptr, nullptr, nullptr, y.data(), hn.data(), cn.data(), true);
    layer.backward(dy.data(), nullptr, nullptr, dx.data(), dh0.data(), dc0.data());
  };
  Plan p;
  p.fixed_reps = quick ? 100 : 3000;
  p.warmup_s = quick ? 0.05 : 0.3;
  return median(measure(run, nullptr, p)) * 1e6;
}

// ---- output -----------------------------------------------------------------------------------

const char* kHeader[] = {"thr",        "config",        "cell",         "mode",
                         "rnncore ms", "rnncore tok/s", "rnncore GF/s", "%peak"};
const int kWidths[] = {3, 13, 4, 5, 10, 13, 12, 5};

std::string fmt(double v, const char* spec) {
  char buf[64];
  std::snprintf(buf, sizeof buf, spec, v);
  return buf;
}

void print_row(const std::vector<std::string>& cells) {
  std::string line;
  for (std::size_t i = 0; i < cells.size(); ++i) {
    const int w = kWidths[i];
    std::string c = cells[i];
    const std::string pad(c.size() < std::size_t(w) ? std::size_t(w) - c.size() : 0, ' ');
    line += (i ? "  " : "") + (i >= 4 ? pad + c : c + pad);  // numbers right-aligned
  }
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) out += (ch == '"' || ch == '\\') ? std::string("\\") + ch : std::string(1, ch);
  return out + "\"";
}

void usage() {
  std::printf(
      "usage: rnncore_bench [options]\n"
      "  --threads 1,2       thread counts (rnncore::set_num_threads)\n"
      "  --configs a,b       subset of small,medium,large,long,charlm,bilstm_tagger,b1_latency,"
      "ragged\n"
      "  --cells rnn,lstm,gru\n"
      "  --reps N            fixed timed repetitions (default: adaptive)\n"
      "  --target-s S        seconds per row when adaptive (default 1.0; 0.05 with --quick)\n"
      "  --quick             small shapes (B<=8, T<=20, I,H<=64), few reps, 512x512 sgemm\n"
      "  --blas PATH         route GEMMs to this CBLAS (OpenBLAS); default: the Eigen kernels\n"
      "  --json PATH         also write the results as JSON\n"
      "  --no-tiny           skip the per-call overhead probe\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> threads = {1, 2};
  std::vector<std::string> config_names, cells = kAllCells;
  for (const auto& c : configs()) config_names.push_back(c.name);
  bool quick = false, tiny = true;
  int reps = 0;
  double target_s = -1;
  std::string blas_path, json_path;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
        return argv[++i];
      };
      if (a == "-h" || a == "--help") {
        usage();
        return 0;
      } else if (a == "--threads") {
        threads.clear();
        for (const auto& t : split(value())) threads.push_back(std::stoi(t));
      } else if (a == "--configs") {
        config_names = split(value());
      } else if (a == "--cells") {
        cells = split(value());
      } else if (a == "--reps") {
        reps = std::stoi(value());
      } else if (a == "--target-s") {
        target_s = std::stod(value());
      } else if (a == "--quick") {
        quick = true;
      } else if (a == "--blas") {
        blas_path = value();
      } else if (a == "--json") {
        json_path = value();
      } else if (a == "--no-tiny") {
        tiny = false;
      } else {
        throw std::invalid_argument("unknown option " + a);
      }
    }
    for (int t : threads)
      if (t < 1) throw std::invalid_argument("--threads: need positive integers");
    for (const auto& n : config_names) {
      const auto all = configs();
      if (std::none_of(all.begin(), all.end(), [&](const Config& c) { return c.name == n; }))
        throw std::invalid_argument("--configs: unknown configuration " + n);
    }
    for (const auto& c : cells)
      if (std::find(kAllCells.begin(), kAllCells.end(), c) == kAllCells.end())
        throw std::invalid_argument("--cells: unknown cell " + c);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rnncore_bench: %s\n", e.what());
    usage();
    return 2;
  }

  Blas blas;
  if (!blas_path.empty()) {
    try {
      blas = load_blas(blas_path);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "rnncore_bench: %s\n", e.what());
      return 1;
    }
    if (blas.set_threads) blas.set_threads(1);
    rnncore::set_blas(blas.sgemm, blas.dgemm, blas.name);
  }
  Plan plan;
  plan.target_s = target_s >= 0 ? target_s : (quick ? 0.05 : 1.0);
  plan.min_reps = quick ? 2 : 3;
  plan.max_reps = quick ? 20 : 2000;
  plan.warmup_s = quick ? 0.02 : 0.25;
  plan.fixed_reps = reps;
  const int peak_n = quick ? 512 : 2048, peak_reps = quick ? 5 : 10;

  double load = -1;
  if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = -1;
    std::fclose(f);
  }
  std::printf(
      "rnncore_bench: rnncore %s (C++), gemm %s, OpenMP %s, %ld cpus, quick=%d, load %.2f\n",
      RNNCORE_VERSION, rnncore::gemm_backend().c_str(), rnncore::has_openmp() ? "on" : "off",
      sysconf(_SC_NPROCESSORS_ONLN), int(quick), load);
  if (load > 0.5) std::fprintf(stderr, "WARNING: the machine is busy; timings will be noisy.\n");

  std::vector<double> peaks;
  for (int n : threads) {
    peaks.push_back(sgemm_peak(peak_n, peak_reps, n, blas.sgemm ? &blas : nullptr));
    std::printf("sgemm peak %dx%d, %d thread(s): %.1f GFLOP/s (%s)\n", peak_n, peak_n, n,
                peaks.back(), rnncore::gemm_backend().c_str());
  }
  print_row({kHeader, kHeader + 8});
  std::vector<Row> results;
  std::vector<std::pair<int, double>> tinies;
  for (std::size_t ti = 0; ti < threads.size(); ++ti) {
    rnncore::set_num_threads(threads[ti]);
    for (Config c : configs()) {
      if (std::find(config_names.begin(), config_names.end(), c.name) == config_names.end())
        continue;
      if (quick) c = quick_config(c);
      for (const auto& cell : c.cells) {
        if (std::find(cells.begin(), cells.end(), cell) == cells.end()) continue;
        for (const Row& r : bench_cell(c, cell, threads[ti], plan, peaks[ti])) {
          results.push_back(r);
          print_row({std::to_string(r.threads), r.config, r.cell, r.mode,
                     fmt(r.median_s * 1e3, "%.3f"), fmt(r.tokens_per_s, "%.3g"),
                     fmt(r.gflops, "%.1f"), fmt(100 * r.frac_peak, "%.0f")});
        }
      }
    }
  }
  if (tiny)
    for (int n : threads) {
      rnncore::set_num_threads(n);
      tinies.emplace_back(n, tiny_us(quick));
      std::printf("tiny LSTM B=1 T=1 I=H=8 fwd+bwd, %d thread(s): %.2f us per call (engine only)\n",
                  n, tinies.back().second);
    }

  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << "{\"meta\": {\"rnncore\": " << json_string(RNNCORE_VERSION)
        << ", \"gemm\": " << json_string(rnncore::gemm_backend())
        << ", \"quick\": " << (quick ? "true" : "false") << ", \"loadavg_start\": " << load
        << ", \"flops\": \"forward per layer and direction 2*tokens*(I_l+H)*G*H; training step 3x "
           "forward\"},\n \"peak\": {";
    for (std::size_t i = 0; i < threads.size(); ++i)
      out << (i ? ", " : "") << "\"" << threads[i] << "\": {\"n\": " << peak_n
          << ", \"best_gflops\": " << peaks[i] << "}";
    out << "},\n \"results\": [";
    for (std::size_t i = 0; i < results.size(); ++i) {
      const Row& r = results[i];
      out << (i ? ",\n  " : "\n  ") << "{\"threads\": " << r.threads
          << ", \"config\": " << json_string(r.config) << ", \"cell\": " << json_string(r.cell)
          << ", \"mode\": " << json_string(r.mode) << ", \"tokens\": " << r.tokens
          << ", \"gflop\": " << r.gflop << ", \"rnncore\": {\"median_s\": " << r.median_s
          << ", \"min_s\": " << r.min_s << ", \"reps\": " << r.reps
          << ", \"tokens_per_s\": " << r.tokens_per_s << ", \"gflops\": " << r.gflops
          << ", \"frac_peak\": " << r.frac_peak << "}}";
    }
    out << "],\n \"tiny\": [";
    for (std::size_t i = 0; i < tinies.size(); ++i)
      out << (i ? ", " : "") << "{\"threads\": " << tinies[i].first
          << ", \"rnncore\": {\"median_us\": " << tinies[i].second << "}}";
    out << "]}\n";
    if (!out) {
      std::fprintf(stderr, "rnncore_bench: cannot write %s\n", json_path.c_str());
      return 1;
    }
    std::printf("wrote %s\n", json_path.c_str());
  }
  return 0;
}
