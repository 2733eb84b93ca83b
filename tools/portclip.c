#include <stdio.h>
#include "portclip.h"
int main(void) { printf("portclip %s\n", pclip_version()); return 0; }
