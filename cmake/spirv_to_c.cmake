# cmake -DIN=x.spv -DOUT=x.spv.inc -P spirv_to_c.cmake
# Writes the SPIR-V words of IN as a C brace initializer of uint32_t
# (SPIR-V is a stream of little-endian 32-bit words).
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR rem "${n} % 8")
if(n EQUAL 0 OR NOT rem EQUAL 0)
  message(FATAL_ERROR "${IN}: not a whole number of 32-bit words")
endif()
string(REGEX REPLACE "(..)(..)(..)(..)" "0x\\4\\3\\2\\1u," words "${hex}")
string(REGEX REPLACE "(([^,]*,){8})" "\\1\n" words "${words}")
file(WRITE ${OUT} "{\n${words}\n}\n")
