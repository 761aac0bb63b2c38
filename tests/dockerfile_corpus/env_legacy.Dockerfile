FROM centos:7
ENV JAVA_HOME /usr/lib/jvm/java-11
ENV PATH $JAVA_HOME/bin:$PATH
ENV GREETING "hello   world"
ENV ONE=1 TWO="two words" THREE=three\ escaped FOUR='single quoted'
ENV EMPTY=
ENV MIXED="a"b'c'd
ENV	TABBED	value with	tabs
