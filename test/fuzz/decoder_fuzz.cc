// libFuzzer target: TradeDecoder::Decode on arbitrary bytes, under ASan and UBSan.
//
// Beyond "never crashes", it checks the decoder's own invariants on every input: the counts
// add up, an undecodable message leaves the output untouched and counts as one, and every
// accepted trade satisfies the contract's limits (so a bug that lets a bad value through
// aborts here rather than in the engine). And the fast path is invisible: the Binance
// decoder with it gives exactly what the general reader alone gives.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "klined/trade_decoder.h"

namespace {

constexpr int64_t kNow = 1732147200000;

void Require(bool ok) {
  if (!ok) std::abort();
}

// Decodes msg with both decoders; aborts unless counts and trades are identical.
void CheckSame(klined::TradeDecoder* a, klined::TradeDecoder* b, std::string_view msg) {
  std::vector<klined::Trade> ta, tb;
  const klined::DecodeResult ra = a->Decode(msg, kNow, &ta);
  const klined::DecodeResult rb = b->Decode(msg, kNow, &tb);
  Require(ra.accepted == rb.accepted && ra.rejected == rb.rejected && ra.by_reason == rb.by_reason);
  if (ra.rejected > 0) Require(ra.first_reason == rb.first_reason);
  Require(ta == tb);
}

void CheckOne(klined::TradeDecoder* decoder, std::string_view msg) {
  std::vector<klined::Trade> out(1);  // a sentinel the decoder must not touch
  out[0].id = -42;
  const klined::DecodeResult r = decoder->Decode(msg, kNow, &out);
  Require(out.size() == 1 + r.accepted);
  Require(out[0].id == -42);
  uint64_t sum = 0;
  for (const uint32_t n : r.by_reason) sum += n;
  Require(sum == r.rejected);
  if (r.rejected > 0) Require(r.by_reason[static_cast<size_t>(r.first_reason)] > 0);
  for (size_t i = 1; i < out.size(); ++i) {
    const klined::Trade& t = out[i];
    Require(t.price.IsPositive() && t.qty.IsPositive() && t.quote.IsPositive());
    Require(t.id >= 1);
    Require(t.time_ms >= 0 && t.time_ms <= kNow + 60000);
    Require(klined::IsValidSymbol(t.symbol.view()));
    // The decoder's fast multiply agrees with MultiplyExact on the canonical operands.
    klined::ParsedDecimal p, q;
    klined::Decimal quote;
    Require(klined::ParseDecimalString(t.price.ToString(), &p) == klined::DecimalError::kOk);
    Require(klined::ParseDecimalString(t.qty.ToString(), &q) == klined::DecimalError::kOk);
    Require(p.value == t.price && q.value == t.qty);
    Require(klined::MultiplyExact(p, q, &quote) == klined::DecimalError::kOk && quote == t.quote);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static klined::TradeDecoder binance;
  static klined::TradeDecoder general;  // the general reader only
  static const bool general_only = (general.set_fast_path(false), true);
  (void)general_only;
  static klined::TradeDecoder iso = [] {
    klined::TradeFieldMap f;
    f.symbol = "symbol";
    f.id = "tradeId";
    f.price = "price";
    f.qty = "quantity";
    f.time = "timestamp";
    f.buyer_maker = "";
    f.time_format = klined::TimeFormat::kIso8601;
    return klined::TradeDecoder(f);
  }();
  const std::string_view msg(reinterpret_cast<const char*>(data), size);
  CheckOne(&binance, msg);
  CheckOne(&iso, msg);
  CheckSame(&binance, &general, msg);
  return 0;
}
