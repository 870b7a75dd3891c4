// Prompt construction and region quantisation vs the remote-code goldens of
// scripts/fixtures/make_text_goldens.py, plus the checked build_prompt errors.
#include "florence/prompts.h"

#include <gtest/gtest.h>

#include "florence/text_test_util.h"

#include <fstream>
#include <nlohmann/json.hpp>

namespace celeriac::florence {
namespace {

const std::filesystem::path& kData = testing::kTextData;
using testing::read_jsonl;

TEST(Prompts, ConstructPromptMatchesReference) {
  auto goldens = read_jsonl(kData / "prompt_goldens.jsonl");
  ASSERT_GE(goldens.size(), 300u);
  int failures = 0;
  for (const auto& g : goldens) {
    const std::string text = g["text"].get<std::string>();
    if (g.contains("error")) {
      try {
        construct_prompt(text);
        if (++failures <= 10) ADD_FAILURE() << "no error for " << nlohmann::json(text).dump();
      } catch (const TaskInputError& e) {
        EXPECT_EQ(e.what(), g["error"].get<std::string>());
      }
      continue;
    }
    std::string got = construct_prompt(text);
    if (got != g["prompt"].get<std::string>() && ++failures <= 10) {
      ADD_FAILURE() << nlohmann::json(text).dump() << "\n  want " << g["prompt"].dump()
                    << "\n  got  " << nlohmann::json(got).dump();
    }
  }
  EXPECT_EQ(failures, 0);
}

TEST(Prompts, BuildPromptEveryTaskAgreesWithReference) {
  std::map<std::string, std::string> reference;
  for (const auto& g : read_jsonl(kData / "prompt_goldens.jsonl")) {
    if (g.contains("prompt")) reference[g["text"]] = g["prompt"];
  }
  const std::vector<std::string> no_input = {"<OCR>",
                                             "<OCR_WITH_REGION>",
                                             "<CAPTION>",
                                             "<DETAILED_CAPTION>",
                                             "<MORE_DETAILED_CAPTION>",
                                             "<OD>",
                                             "<DENSE_REGION_CAPTION>",
                                             "<REGION_PROPOSAL>"};
  for (const auto& task : no_input) {
    ASSERT_TRUE(reference.count(task)) << task;
    EXPECT_EQ(build_prompt(task), reference[task]);
    EXPECT_THROW(build_prompt(task, "a car"), TaskInputError);
  }
  const std::vector<std::string> text_input = {"<CAPTION_TO_PHRASE_GROUNDING>",
                                               "<REFERRING_EXPRESSION_SEGMENTATION>",
                                               "<OPEN_VOCABULARY_DETECTION>"};
  for (const auto& task : text_input) {
    ASSERT_TRUE(reference.count(task + " a green car ")) << task;
    EXPECT_EQ(build_prompt(task, " a green car "), reference[task + " a green car "]);
    EXPECT_THROW(build_prompt(task), TaskInputError);
    EXPECT_THROW(build_prompt(task, ""), TaskInputError);
  }
  for (const std::string task : {"<REGION_TO_SEGMENTATION>", "<REGION_TO_CATEGORY>",
                                 "<REGION_TO_DESCRIPTION>", "<REGION_TO_OCR>"}) {
    const std::string region = "<loc_52><loc_332><loc_932><loc_774>";
    ASSERT_TRUE(reference.count(task + region)) << task;
    EXPECT_EQ(build_prompt(task, region), reference[task + region]);
    EXPECT_THROW(build_prompt(task), TaskInputError);
    EXPECT_THROW(build_prompt(task, "a car"), RegionInputError);
    EXPECT_THROW(build_prompt(task, "<loc_1><loc_2><loc_3>"), RegionInputError);
    EXPECT_THROW(build_prompt(task, "<loc_1><loc_2><loc_3><loc_1000>"), RegionInputError);
    EXPECT_THROW(build_prompt(task, region + " "), RegionInputError);
  }
  EXPECT_THROW(build_prompt("<CAPTIONS>"), UnknownTaskError);
  EXPECT_THROW(build_prompt("caption"), UnknownTaskError);
}

TEST(Prompts, RegionQuantisationMatchesReference) {
  auto goldens = read_jsonl(kData / "region_goldens.jsonl");
  ASSERT_GE(goldens.size(), 300u);
  int failures = 0;
  for (const auto& g : goldens) {
    auto b = g["box"].get<std::vector<double>>();
    auto size = g["image_size"].get<std::vector<int>>();
    auto bins = g["bins"].get<std::vector<int>>();
    std::string want;
    for (int v : bins) want += "<loc_" + std::to_string(v) + ">";
    std::string got = region_to_loc_tokens(b[0], b[1], b[2], b[3], size[0], size[1]);
    if (got != want && ++failures <= 10) {
      ADD_FAILURE() << g.dump() << "\n  got " << got;
    }
  }
  EXPECT_EQ(failures, 0);
  EXPECT_THROW(region_to_loc_tokens(10, 10, 5, 20, 100, 100), RegionInputError);
  EXPECT_THROW(region_to_loc_tokens(-1, 0, 5, 5, 100, 100), RegionInputError);
  EXPECT_THROW(region_to_loc_tokens(0, 0, 101, 5, 100, 100), RegionInputError);
  EXPECT_THROW(region_to_loc_tokens(0, 0, NAN, 5, 100, 100), RegionInputError);
}

}  // namespace
}  // namespace celeriac::florence
