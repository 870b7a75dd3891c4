// Post-processing vs the remote-code goldens of scripts/fixtures/make_text_goldens.py: every
// record's json.dumps(result) must be reproduced byte for byte (or the reference's failure).
#include "florence/postprocess.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>

namespace celeriac::florence {
namespace {

const std::filesystem::path kData = std::filesystem::path(CELERIAC_TEST_DATA) / "florence-text";

TEST(PostProcess, MatchesReferenceOnEveryGolden) {
  std::ifstream in(kData / "postprocess_goldens.jsonl");
  std::string line;
  std::map<std::string, int> per_type;
  int failures = 0, total = 0;
  while (std::getline(in, line)) {
    auto g = nlohmann::json::parse(line);
    const std::string task = g["task"], text = g["text"];
    ImageSize size{g["image_size"][0].get<int>(), g["image_size"][1].get<int>()};
    ++total;
    ++per_type[parse_type_name(parse_type_for_task(task))];
    std::string got;
    try {
      got = to_python_json(post_process_generation(text, task, size));
    } catch (const PostProcessError& e) {
      got = std::string("error: ") + e.what();
    }
    std::string want = g.contains("error") ? "error" : g["result"].get<std::string>();
    bool ok = g.contains("error") ? got.starts_with("error") : got == want;
    if (!ok && ++failures <= 10) {
      ADD_FAILURE() << task << " " << nlohmann::json(text).dump() << " size " << size.width << "x"
                    << size.height << "\n  want " << want << "\n  got  " << got;
    }
  }
  EXPECT_EQ(failures, 0) << "of " << total;
  for (const char* type : {"pure_text", "ocr", "description_with_bboxes", "bboxes",
                           "phrase_grounding", "polygons", "description_with_bboxes_or_polygons"}) {
    EXPECT_GE(per_type[type], 300) << type;
  }
}

TEST(PostProcess, SpecExampleOd) {
  auto r = post_process_generation(
      "</s><s>car<loc_53><loc_333><loc_933><loc_774>door handle<loc_425><loc_503><loc_474>"
      "<loc_515>wheel<loc_709><loc_576><loc_865><loc_772><loc_150><loc_584><loc_309><loc_773></s>",
      "<OD>", {640, 480});
  EXPECT_EQ(to_python_json(r["<OD>"]["bboxes"][0]),
            "[34.23999786376953, 160.0800018310547, 597.4400024414062, 371.7599792480469]");
  EXPECT_EQ(to_python_json(r["<OD>"]["labels"]), R"(["car", "door handle", "wheel", "wheel"])");
}

TEST(PostProcess, PythonFloatRepr) {
  EXPECT_EQ(python_float_repr(392.0), "392.0");
  EXPECT_EQ(python_float_repr(0.0001), "0.0001");
  EXPECT_EQ(python_float_repr(0.00001), "1e-05");
  EXPECT_EQ(python_float_repr(1.5e16), "1.5e+16");
  EXPECT_EQ(python_float_repr(1e15), "1000000000000000.0");
  EXPECT_EQ(python_float_repr(33.599998474121094), "33.599998474121094");
  EXPECT_EQ(python_float_repr(-2.5), "-2.5");
}

}  // namespace
}  // namespace celeriac::florence
