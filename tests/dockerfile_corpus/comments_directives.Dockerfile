#syntax = docker/dockerfile:1
#ESCAPE=\
# A comment after the directives ends them: this is not a directive
# escape=`
FROM alpine
    # indented comment
RUN echo "a # is not a comment here"
  RUN echo "leading spaces before an instruction"
RUN echo continues \
# comment between
\
    done
