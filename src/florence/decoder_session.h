// The contract between the text decoder and the search (greedy / beam): the search owns the
// token sequences, the session owns the key/value cache. Keeping the search ignorant of the
// model lets it be tested against transformers' own search on a toy model, and lets the model
// be tested on first-step logits without any search.
//
//   auto session = model.start(encoded, beams_per_input);   // rows = inputs × beams
//   const float* logits = session->step(first_tokens);      // [rows, vocab]
//   session->reorder(parents);                               // beam i continues old row parents[i]
//   logits = session->step(next_tokens);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace celeriac::florence {

class DecoderSession {
 public:
  virtual ~DecoderSession() = default;

  // Number of sequences decoded side by side (inputs × beams), fixed for the session.
  virtual int rows() const = 0;
  virtual int vocab_size() const = 0;

  // Appends one token to every row and returns the next-token logits, row-major [rows, vocab].
  // The pointer stays valid until the next call on this session.
  virtual const float* step(const std::vector<int32_t>& tokens) = 0;

  // Rearranges the cached rows so that row i continues what row parents[i] was; parents has
  // rows() entries, each in [0, rows()). Used by beam search after choosing the next beams.
  virtual void reorder(const std::vector<int>& parents) = 0;

  // Seconds spent so far in each part of step(), in step order (benchmarks print where a step
  // goes); empty where a session keeps no such times.
  struct PhaseTime {
    std::string name;
    double seconds = 0;
  };
  virtual std::vector<PhaseTime> phase_times() const { return {}; }
};

}  // namespace celeriac::florence
