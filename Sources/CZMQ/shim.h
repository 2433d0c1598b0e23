#include <zmq.h>
#include <sys/eventfd.h>
#include <signal.h>
