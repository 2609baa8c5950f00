// settle(): a job's values against the flags beside it (job.hpp).
#include <algorithm>

#include <fmt/format.h>

#include "analytic/formulas.hpp"
#include "job/job.hpp"
#include "util/error.hpp"
#include "util/parse.hpp"

namespace flopscope::job {

namespace {

int64_t flag_count(const FlagValue& f) {
  // --gpus may be a list (the scaling table): the first is the layout's.
  const std::string first = f.text.substr(0, f.text.find(','));
  return parse_count(f.flag, first, INT64_C(1) << 30);
}

std::string where_of(const Job& j, const std::string& name) {
  const Value* v = j.find(name);
  return v ? v->where : "";
}

}  // namespace

Settled settle(Job& j, const Flags& flags, int64_t fallback_gpus, bool layout) {
  // What no flag can settle stops the reading before anything else is checked.
  for (const Problem& p : j.problems)
    if (p.settled_by.empty()) throw UsageError(fmt::format("{}: {}", j.file, p.message));
  std::set<std::string> given;
  for (const auto& [name, f] : flags) {
    given.insert(name);
    j.record(name, f.text, From::flag, f.flag + " " + f.text);
  }
  JobLayout l = j.layout;
  auto count_of = [&](const char* name, std::optional<int64_t> JobLayout::*field) -> std::optional<int64_t> {
    if (auto it = flags.find(name); it != flags.end()) {
      const int64_t v = flag_count(it->second);
      l.*field = v;
      return v;
    }
    return l.*field;
  };
  const auto gpus_opt = count_of("gpus", &JobLayout::gpus);
  const int64_t tp = count_of("tp", &JobLayout::tp).value_or(1), pp = count_of("pp", &JobLayout::pp).value_or(1);
  const int64_t cp = count_of("cp", &JobLayout::cp).value_or(1);
  count_of("vpp", &JobLayout::vpp);
  const auto mb = count_of("micro_batch", &JobLayout::micro_batch);
  const auto gb_flag = flags.count("global_batch") ? count_of("global_batch", &JobLayout::global_batch) : std::nullopt;
  int64_t gpus = fallback_gpus;
  if (gpus_opt) {
    gpus = *gpus_opt;
  } else {
    l.gpus = gpus;
    j.record("gpus", gpus, From::framework_default,
             fmt::format("flopscope's default --gpus {}: the job file does not say how many GPUs it runs on", gpus));
  }

  // A file that contradicts itself: the model-parallel group larger than (or not dividing) the
  // GPUs it launches. Named with where each number came from.
  const int64_t group = tp * pp * cp;
  if (layout && gpus % group != 0) {
    const Value* g = j.find("gpus");
    throw UsageError(fmt::format("{}: the job runs on {} GPUs ({}) but tp x pp x cp = {} x {} x {} = {} ({}; {}{}), "
                                 "which {} them; pass --gpus N (a multiple of {}) or --tp/--pp",
                                 j.file, gpus, g ? g->where : "", tp, pp, cp, group, where_of(j, "tp"), where_of(j, "pp"),
                                 cp > 1 ? "; " + where_of(j, "cp") : "", group > gpus ? "is more than" : "does not divide",
                                 group));
  }
  const int64_t dp = std::max<int64_t>(1, gpus / group);

  // Context parallelism, FSDP and mixtures of experts predict models: the job's cp, fsdp, ep
  // and etp go to it as they are.
  if (l.ep && *l.ep > 1 && !j.find("experts"))
    j.problem(fmt::format("expert parallelism (ep {}, {}) without experts: Megatron-LM requires --num-experts", *l.ep,
                          where_of(j, "ep")),
              {"ep"});
  if (given.count("fsdp")) {
    l.fsdp.reset();  // the flag's value goes to predict as it is
  } else if (l.fsdp && layout) {
    int64_t shard = *l.fsdp;
    const int64_t rep = l.dp_replicate.value_or(1);
    if (shard == -1) {
      if (dp % rep != 0)
        throw UsageError(fmt::format("{}: data_parallel_replicate_degree {} ({}) does not divide the {} data-parallel "
                                     "GPUs; pass --gpus N",
                                     j.file, rep, where_of(j, "dp_replicate"), dp));
      shard = dp / rep;
      j.record("fsdp", shard, From::derived,
               fmt::format("the data-parallel GPUs left: {} / ({} x replicate {}) ({})", gpus, group, rep,
                           where_of(j, "fsdp")));
    } else if (shard * rep != dp) {
      throw UsageError(fmt::format("{}: data_parallel_shard_degree {} x replicate {} ({}) is not the {} data-parallel "
                                   "GPUs of {} GPUs / tp x pp x cp {}; pass --gpus N",
                                   j.file, shard, rep, where_of(j, "fsdp"), dp, gpus, group));
    }
    l.fsdp = shard;
  }

  // The global batch a data-parallel rank implies.
  if (!gb_flag && !l.global_batch && l.batch_per_dp_rank) {
    const int64_t per = l.batch_per_dp_rank_is_micro_batch && mb ? *mb : *l.batch_per_dp_rank;
    l.global_batch = per * dp;
    const Value* v = j.find("global_batch");
    j.record("global_batch", *l.global_batch, From::derived,
             fmt::format("{} a data-parallel rank x dp {} ({})", per, dp, v ? v->where : ""));
  }

  // The padded vocabulary, from the final tp.
  Settled s;
  s.vocab_multiple = j.vocab_divisible_by ? *j.vocab_divisible_by * tp : 1;
  if (j.tokenizer_vocab && !given.count("vocab")) {
    const int64_t padded = megatron_padded_vocab(*j.tokenizer_vocab, s.vocab_multiple);
    j.model.vocab = padded;
    j.record("vocab", padded, j.tokenizer_from,
             fmt::format("{}; padded to a multiple of {} x tp {} = {} (Megatron-LM megatron/training/tokenizer/"
                         "tokenizer.py, _vocab_size_with_padding; {})",
                         j.tokenizer_where, *j.vocab_divisible_by, tp, s.vocab_multiple, j.divisible_where));
  } else if (j.model.vocab && !given.count("vocab") && !j.find("vocab")) {
    j.record("vocab", *j.model.vocab, From::file, "");
  }

  // The training tokens: steps x global batch x seq.
  if (!given.count("tokens") && (l.train_steps || l.train_samples)) {
    const int64_t seq = flags.count("seq") ? parse_count("--seq", flags.at("seq").text, INT64_C(1) << 24)
                                           : j.model.n_ctx.value_or(0);
    const int64_t gb = l.global_batch.value_or(0);
    if (seq > 0 && (l.train_samples || gb > 0)) {
      const double tokens = l.train_samples ? static_cast<double>(*l.train_samples) * static_cast<double>(seq)
                                            : static_cast<double>(*l.train_steps) * static_cast<double>(gb) *
                                                  static_cast<double>(seq);
      j.model.train_tokens = tokens;
      j.record("tokens", tokens, From::derived,
               l.train_samples ? fmt::format("{} samples x seq {} ({})", *l.train_samples, seq, where_of(j, "train_samples"))
                               : fmt::format("{} steps x global batch {} x seq {} ({})", *l.train_steps, gb, seq,
                                             where_of(j, "train_steps")));
    }
  }
  j.raise_unsettled(given, layout);
  s.layout = l;
  return s;
}

}  // namespace flopscope::job
