#include "app/multipart.h"

#include <gtest/gtest.h>

namespace celeriac::app {
namespace {

TEST(Multipart, FindsTheBoundaryOfFormDataOnly) {
  EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=abc"), "abc");
  EXPECT_EQ(multipart_boundary("Multipart/Form-Data; charset=utf-8; boundary=\"a b;c\""), "a b;c");
  EXPECT_EQ(multipart_boundary("application/json"), std::nullopt);
  EXPECT_EQ(multipart_boundary("multipart/form-data"), std::nullopt);
}

TEST(Multipart, SplitsFieldsAndFilesWithBinaryData) {
  const std::string image("\x89PNG\r\n\x1a\n\0\r\n--notquite", 20);
  const std::string body =
      "--XyZ\r\nContent-Disposition: form-data; name=\"task_prompt\"\r\n\r\n<OD>\r\n"
      "--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a \\\"b\\\".png\"\r\n"
      "Content-Type: image/png\r\n\r\n" +
      image + "\r\n--XyZ--\r\n";
  const auto parts = parse_multipart(body, "XyZ");
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].name, "task_prompt");
  EXPECT_EQ(parts[0].data, "<OD>");
  EXPECT_EQ(parts[0].filename, "");
  EXPECT_EQ(parts[1].name, "image");
  EXPECT_EQ(parts[1].filename, "a \"b\".png");
  EXPECT_EQ(parts[1].content_type, "image/png");
  EXPECT_EQ(parts[1].data, image);
}

TEST(Multipart, RefusesMalformedBodies) {
  EXPECT_THROW(parse_multipart("no boundary here", "B"), MultipartError);
  EXPECT_THROW(parse_multipart("--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\ncut", "B"),
               MultipartError);
  EXPECT_THROW(parse_multipart("--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--", "B"),
               MultipartError);  // no name
  EXPECT_THROW(parse_multipart("--B\r\nno colon\r\n\r\nx\r\n--B--", "B"), MultipartError);
  EXPECT_THROW(parse_multipart("--B--", ""), MultipartError);
  EXPECT_TRUE(parse_multipart("--B--\r\n", "B").empty());
}

}  // namespace
}  // namespace celeriac::app
