# escape=`
# syntax=docker/dockerfile:1

FROM mcr.microsoft.com/windows/servercore:ltsc2022
SHELL ["powershell", "-Command", "$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue';"]
ENV APP_HOME=C:\app `
    TOOLS=C:\tools
WORKDIR C:\app
COPY bin\ C:\app\bin\
RUN New-Item -ItemType Directory -Path C:\data ; `
    Set-Content -Path C:\data\ready.txt -Value 'ok' ; `
    Write-Host "done"
RUN setx /M PATH "%PATH%;C:\tools"
VOLUME C:\data
HEALTHCHECK CMD powershell -command `
    try { `
     $response = iwr http://localhost/ -UseBasicParsing; `
     if ($response.StatusCode -eq 200) { return 0} `
     else {return 1}; `
    } catch { return 1 }
CMD ["C:\\app\\bin\\server.exe"]
