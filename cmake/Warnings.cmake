# One warning policy for every target: warnings are errors.
add_compile_options(-Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-unused-parameter
                    -Wmissing-prototypes -Wstrict-prototypes -fno-strict-aliasing)
add_compile_definitions(_GNU_SOURCE)
