FROM ubuntu:22.04

# Comment lines and blank lines inside a continuation are skipped.
RUN apt-get update \
    # the package list
    && apt-get install -y \
        build-essential \

        git \
    # more packages after a blank line
        wget \
    && rm -rf /var/lib/apt/lists/*

RUN echo one \  
    two \	
    three

ENV A=1 \
    B=2 \
    \
    C=3

LABEL description="trailing backslash inside quotes \\" other=value
RUN echo "a backslash at the end is a continuation"    \
 && echo 'even with spaces after it'
RUN echo escaped \\
RUN echo done
